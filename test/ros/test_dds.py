"""The Fast DDS large-message profile: when it applies, and that Fast DDS really loads it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from esnet_ros.ros.dds import ENV_VAR, OPT_OUT_VAR, PROFILE, use_large_message_profile


def test_profile_applies_only_when_the_user_has_not_chosen():
    env: dict[str, str] = {}
    assert use_large_message_profile(env) == str(PROFILE) and env[ENV_VAR] == str(PROFILE)
    mine = {ENV_VAR: "/etc/my_fastdds.xml"}
    assert use_large_message_profile(mine) == "/etc/my_fastdds.xml" and mine == {ENV_VAR: "/etc/my_fastdds.xml"}
    off = {OPT_OUT_VAR: "none"}
    assert use_large_message_profile(off) is None and ENV_VAR not in off
    other = {OPT_OUT_VAR: str(PROFILE)}
    assert use_large_message_profile(other) == str(PROFILE)
    with pytest.raises(FileNotFoundError, match=r"ESNET_ROS_FASTDDS_PROFILE='/nope.xml' is not a file; .*or 'none'"):
        use_large_message_profile({OPT_OUT_VAR: "/nope.xml"})


# A publisher process under the profile: it reports the shared-memory segments it created and
# sends one 1280x720 bgr8 frame (2.7 MB: too big for Fast DDS's default 0.5 MB segment).
_PUBLISHER = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from esnet_ros.ros.dds import use_large_message_profile
    before = set(os.listdir("/dev/shm"))
    use_large_message_profile()
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    rclpy.init()
    node = rclpy.create_node("esnet_dds_test_pub")
    pub = node.create_publisher(Image, "esnet_dds_test", QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE))
    new = {f: os.path.getsize("/dev/shm/" + f) for f in set(os.listdir("/dev/shm")) - before}
    print(json.dumps({"profile": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE"), "segments": new}), flush=True)
    msg = Image(height=720, width=1280, encoding="bgr8", step=3840)
    msg.data = (np.arange(720 * 3840) % 251).astype(np.uint8).tobytes()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sys.stdin.readline().strip() != "stop":
        pub.publish(msg)
    rclpy.shutdown()
""")


@pytest.mark.ros
def test_fast_dds_loads_the_profile_and_a_camera_frame_arrives_intact():
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    env = {k: v for k, v in os.environ.items() if k not in (ENV_VAR, OPT_OUT_VAR)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _PUBLISHER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        report = json.loads(proc.stdout.readline())
        assert report["profile"] == str(PROFILE)
        # Fast DDS created a shared-memory segment of the profile's 16 MB (the default is 0.5 MB)
        assert any(size >= 16 * 1024 * 1024 for size in report["segments"].values()), report["segments"]
        node = rclpy.create_node("esnet_dds_test_sub", context=context)
        got: list[Image] = []
        node.create_subscription(
            Image, "esnet_dds_test", got.append, QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        for _ in range(100):
            proc.stdin.write("send\n")
            proc.stdin.flush()
            executor.spin_once(timeout_sec=0.1)
            if got:
                break
        assert got, "no frame arrived"
        msg = got[0]
        assert (msg.height, msg.width, msg.encoding, msg.step) == (720, 1280, "bgr8", 3840)
        data = np.frombuffer(bytes(msg.data), np.uint8)
        np.testing.assert_array_equal(data, (np.arange(720 * 3840) % 251).astype(np.uint8))
    finally:
        if proc.poll() is None:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
        proc.wait(timeout=20)
        context.try_shutdown()
    assert "error" not in proc.stderr.read().lower()
