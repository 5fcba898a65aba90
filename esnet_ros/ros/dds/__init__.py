"""DDS settings that make camera-sized messages cheap: a Fast DDS profile with a large shared-memory segment.

``use_large_message_profile()`` points ``FASTDDS_DEFAULT_PROFILES_FILE`` at the bundled
``fastdds_large_messages.xml`` (see that file for the measurements) unless the user set it, or
``ESNET_ROS_FASTDDS_PROFILE`` says otherwise (``none`` to turn it off, or a path to use instead).
Fast DDS reads the variable when a process creates its first participant, so call this before
``rclpy.init`` (and pass ``os.environ`` to the processes you start). Other RMWs ignore it.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import MutableMapping

__all__ = ["PROFILE", "ENV_VAR", "OPT_OUT_VAR", "use_large_message_profile"]

PROFILE = pathlib.Path(__file__).resolve().with_name("fastdds_large_messages.xml")
ENV_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"
OPT_OUT_VAR = "ESNET_ROS_FASTDDS_PROFILE"


def use_large_message_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Set ``FASTDDS_DEFAULT_PROFILES_FILE`` in ``environ`` (default ``os.environ``) if unset.

    Returns the profile in effect (the user's own, ours, or ``None`` when turned off).
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_VAR):
        return env[ENV_VAR]
    choice = env.get(OPT_OUT_VAR, "").strip()
    if choice.lower() in ("none", "off", "0", "false"):
        return None
    path = pathlib.Path(choice) if choice else PROFILE
    if not path.is_file():
        raise FileNotFoundError(f"{OPT_OUT_VAR}={choice!r} is not a file; give a Fast DDS XML profile, or 'none'")
    env[ENV_VAR] = str(path)
    return str(path)
