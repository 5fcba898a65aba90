"""The package's layering, read from the source (AST), with no hand-kept module lists.

Layers, lowest first: ``core <- inference <- data <- training <- ros <- tooling <- cli``. A module may import its
own layer and the layers below it, never one above; no two modules import each other, directly or
through others; only ``ros`` (the node) and ``tooling`` (demo, cameras, monitor) import rclpy or a message
package; every module outside them imports with rclpy absent, and so does the harness behind ``esnet demo --help``.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "esnet_ros"
LAYERS = ("core", "inference", "data", "training", "ros", "tooling", "cli")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60
ROS_LAYERS = ("ros", "tooling")  # the node and its run-time parts; the tools around it (demo, cameras, monitor)
ROS_ONLY = ("rclpy", "rosidl_runtime_py", "launch", "launch_ros", "cv_bridge", "esnet_ros.msg")


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, pathlib.Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: pathlib.Path, name: str) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions, as absolute names."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def layer_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "esnet_ros" and parts[1] in LAYERS else None


def internal_graph(modules: dict[str, pathlib.Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports (``from pkg import mod`` resolves to ``pkg.mod``)."""
    graph = {}
    for name, path in modules.items():
        graph[name] = {m for m in imports_of(path, name) if m in modules and m != name}
    return graph


def layer_violations(modules: dict[str, pathlib.Path]) -> list[str]:
    bad = []
    for name, deps in internal_graph(modules).items():
        own = layer_of(name)
        if own is None:
            continue
        for dep in sorted(deps):
            other = layer_of(dep)
            if other is not None and LAYERS.index(other) > LAYERS.index(own):
                bad.append(f"{name} ({own}) imports {dep} ({other}), a higher layer")
    return bad


def ros_only_violations(modules: dict[str, pathlib.Path]) -> list[str]:
    bad = []
    for name, path in modules.items():
        if layer_of(name) in ROS_LAYERS or name == "esnet_ros.msg":
            continue
        roots = {dep.split(".")[0] for dep in imports_of(path, name)}
        roots |= {"esnet_ros.msg" for dep in imports_of(path, name) if dep.startswith("esnet_ros.msg")}
        bad += [
            f"{name} imports {root}; only esnet_ros.ros and esnet_ros.tooling may import ROS packages"
            for root in sorted(roots)
            if root in ROS_ONLY or root.endswith("_msgs")
        ]
    return bad


def private_imports(modules: dict[str, pathlib.Path]) -> list[str]:
    """``from esnet_ros.x import _name`` across modules: a private name is the other module's business."""
    bad = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("esnet_ros")):
                bad += [
                    f"{name} imports {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    return bad


def oversized(modules: dict[str, pathlib.Path]) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES (docstrings included)."""
    bad = []
    for name, path in modules.items():
        text = path.read_text()
        if text.count("\n") > MAX_MODULE_LINES:
            bad.append(f"{name}: {text.count(chr(10))} lines > {MAX_MODULE_LINES}")
        for node in ast.walk(ast.parse(text, str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    bad.append(f"{name}.{node.name} (line {node.lineno}): {length} lines > {MAX_FUNCTION_LINES}")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_every_module_lives_in_a_layer():
    stray = [n for n in package_modules() if n != "esnet_ros" and layer_of(n) is None]
    assert stray == [], f"modules outside the layer packages {LAYERS}: {stray}"


def test_no_module_imports_a_higher_layer():
    assert layer_violations(package_modules()) == []


def test_no_import_cycles():
    assert cycles(internal_graph(package_modules())) == []


def test_only_the_ros_layer_imports_ros():
    assert ros_only_violations(package_modules()) == []


def test_no_private_names_cross_modules():
    assert private_imports(package_modules()) == []


def test_modules_and_functions_have_a_readable_size():
    assert oversized(package_modules()) == []


def test_the_checks_catch_violations(tmp_path):
    """The checks themselves fail on a deliberate violation (a test that cannot fail proves nothing)."""
    pkg = tmp_path / "esnet_ros"
    for layer in ("core", "ros"):
        (pkg / layer).mkdir(parents=True)
        (pkg / layer / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("from esnet_ros.ros import b\nimport rclpy\nfrom sensor_msgs.msg import Image\n")
    (pkg / "ros" / "b.py").write_text("from . import c\n")
    (pkg / "ros" / "c.py").write_text("def f():\n    from esnet_ros.ros.b import x\n")
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    (pkg / "ros" / "d.py").write_text(f"from esnet_ros.ros.c import _helper\ndef long():\n{body}" + "#\n" * 400)
    modules = {
        ".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p for p in pkg.rglob("*.py")
    }
    assert layer_violations(modules) == [
        "esnet_ros.core.a (core) imports esnet_ros.ros (ros), a higher layer",
        "esnet_ros.core.a (core) imports esnet_ros.ros.b (ros), a higher layer",
    ]
    assert cycles(internal_graph(modules)) == [["esnet_ros.ros.b", "esnet_ros.ros.c"]]
    assert len(ros_only_violations(modules)) == 2
    assert private_imports(modules) == ["esnet_ros.ros.d imports esnet_ros.ros.c._helper"]
    assert oversized(modules) == ["esnet_ros.ros.d: 462 lines > 450", "esnet_ros.ros.d.long (line 2): 61 lines > 60"]


BLOCK_ROS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        ros = {'rclpy', 'launch', 'launch_ros', 'cv_bridge'}
        if root in ros or root.endswith('_msgs') or name.startswith('esnet_ros.msg'):
            raise ImportError(f'{name} is blocked: this module must not need ROS')
sys.meta_path.insert(0, Block())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print('imported', len(sys.argv) - 1)
"""


def test_modules_outside_ros_import_without_rclpy():
    names = [n for n in package_modules() if layer_of(n) not in (None, *ROS_LAYERS) and not n.endswith(".__main__")]
    names += ["esnet_ros.tooling.harness", "esnet_ros.ros.topics"]  # what `esnet demo --help` needs
    names += ["esnet_ros"]
    out = subprocess.run([sys.executable, "-c", BLOCK_ROS, *names], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"imported {len(names)}" in out.stdout


def test_import_esnet_ros_alone_does_not_import_torch():
    code = "import sys, esnet_ros; assert 'torch' not in sys.modules, 'torch imported'; print(esnet_ros.__all__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Segmenter" in out.stdout and "load_checkpoint" in out.stdout


def test_public_api_resolves():
    import esnet_ros

    for name in esnet_ros.__all__:
        assert getattr(esnet_ros, name) is not None, name


@pytest.mark.ros
def test_every_module_imports():
    """All modules, the ros layer too, import where ROS is installed (a module moved away breaks here)."""
    names = [n for n in package_modules() if not n.endswith(".__main__")]
    code = (
        "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
        "print('imported', len(sys.argv) - 1)"
    )
    out = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"imported {len(names)}" in out.stdout


@pytest.mark.ros
def test_every_internal_import_resolves():
    """Function-local imports too (they run only on some paths): each ``from esnet_ros.x import y`` names a
    module and a name that exist."""
    import importlib
    import importlib.util

    missing = []
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("esnet_ros") and not node.level
            ):
                continue
            if node.module.startswith("esnet_ros.msg"):
                continue
            module = importlib.import_module(node.module)
            missing += [
                f"{name}: {node.module}.{a.name}"
                for a in node.names
                if not hasattr(module, a.name) and importlib.util.find_spec(f"{node.module}.{a.name}") is None
            ]
    assert missing == []
