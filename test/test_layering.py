"""The package's layering, read from the source (AST), with no hand-kept module lists.

Layers, lowest first: ``core <- inference <- data <- training <- ros <- cli``. A module may import its
own layer and the layers below it, never one above; no two modules import each other, directly or
through others; only the ``ros`` layer imports rclpy or a message package; and every module outside
``ros`` imports with rclpy absent.
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys


PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "esnet_ros"
LAYERS = ("core", "inference", "data", "training", "ros", "cli")
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
        if layer_of(name) == "ros" or name == "esnet_ros.msg":
            continue
        for dep in sorted(imports_of(path, name)):
            root = dep.split(".")[0]
            if dep.startswith(ROS_ONLY) and (dep in ROS_ONLY or dep.split(".")[0] in ROS_ONLY or
                                             dep.startswith("esnet_ros.msg")) or root.endswith("_msgs"):
                bad.append(f"{name} imports {dep}; only esnet_ros.ros may import ROS packages")
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
    modules = {".".join(p.relative_to(tmp_path).with_suffix("").parts).removesuffix(".__init__"): p
               for p in pkg.rglob("*.py")}
    assert layer_violations(modules) == [
        "esnet_ros.core.a (core) imports esnet_ros.ros (ros), a higher layer",
        "esnet_ros.core.a (core) imports esnet_ros.ros.b (ros), a higher layer",
    ]
    assert cycles(internal_graph(modules)) == [["esnet_ros.ros.b", "esnet_ros.ros.c"]]
    assert len(ros_only_violations(modules)) == 2


BLOCK_ROS = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        root = name.split('.')[0]
        if root in {'rclpy', 'launch', 'launch_ros', 'cv_bridge'} or root.endswith('_msgs') or name.startswith('esnet_ros.msg'):
            raise ImportError(f'{name} is blocked: this module must not need ROS')
sys.meta_path.insert(0, Block())
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
print('imported', len(sys.argv) - 1)
"""


def test_modules_outside_ros_import_without_rclpy():
    names = [n for n in package_modules() if layer_of(n) not in (None, "ros")]
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
