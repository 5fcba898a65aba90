"""QoS of the segmentation node: output profiles, and the camera subscription that follows its publishers.

``input_qos.reliability=auto`` subscribes reliable when any camera publisher is reliable and best
effort when all are; :class:`InputSubscription` re-checks that as publishers come and go and
recreates the subscription when it must change. ``qos_overrides.<topic>.subscription.*`` are
declared on the first subscription to a topic; a user override of the reliability pins it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.event_handler import PublisherEventCallbacks, SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from esnet_ros.msg import ClassMap, SegmentationStats
from esnet_ros.ros.descriptors import descriptor
from esnet_ros.ros.frames import OUTPUTS, LabelInfo

__all__ = [
    "RELIABILITIES",
    "LATCHED",
    "reliability_name",
    "policy_name",
    "output_qos",
    "publisher_incompatible_fix",
    "OutputQosWarnings",
    "create_output_publishers",
    "InputSubscription",
]

RELIABILITIES = ("auto", "reliable", "best_effort")
#: class map / label info: the last message reaches late subscribers
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


def reliability_name(policy: ReliabilityPolicy | None) -> str:
    return {ReliabilityPolicy.RELIABLE: "reliable", ReliabilityPolicy.BEST_EFFORT: "best_effort"}.get(
        policy, str(policy).split(".")[-1].lower()
    )


def reliability_policy(name: str) -> ReliabilityPolicy:
    return ReliabilityPolicy.RELIABLE if name == "reliable" else ReliabilityPolicy.BEST_EFFORT


def policy_name(kind: Any) -> str:
    """``RELIABILITY`` from a QoSPolicyKind / rmw policy enum, whatever the rclpy version calls it."""
    name = str(getattr(kind, "name", kind)).split(".")[-1].upper()
    return name[len("RMW_QOS_POLICY_") :] if name.startswith("RMW_QOS_POLICY_") else name


def output_qos(reliability: str, depth: int) -> QoSProfile:
    """The profile of labels/color/overlay/confidence/stats (``output_qos.*``)."""
    return QoSProfile(
        depth=int(depth),
        history=HistoryPolicy.KEEP_LAST,
        reliability=reliability_policy(reliability),
        durability=DurabilityPolicy.VOLATILE,
    )


def publisher_incompatible_fix(policy: str) -> str:
    """What to do when a subscriber's QoS does not match an output's."""
    if policy == "RELIABILITY":
        return (
            "a subscriber requests reliable but the outputs are best effort: set "
            "output_qos.reliability:=reliable, or subscribe best effort"
        )
    if policy == "DURABILITY":
        return "a subscriber requests transient local but the outputs are volatile: subscribe volatile"
    return f"a subscriber's {policy.lower()} policy does not match: align the subscriber's QoS"


class OutputQosWarnings:
    """Warns once per (output topic, policy) when a subscriber's QoS does not match, with the fix."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.warned: set[tuple[str, str]] = set()

    def callbacks(self, topic: str) -> PublisherEventCallbacks:
        return PublisherEventCallbacks(incompatible_qos=lambda event: self.on_incompatible(topic, event))

    def on_incompatible(self, topic: str, event: Any) -> None:
        policy = policy_name(event.last_policy_kind)
        if (topic, policy) in self.warned:
            return
        self.warned.add((topic, policy))
        fix = publisher_incompatible_fix(policy)
        self.node.get_logger().warning(f"incompatible QoS on {self.node.resolve_topic_name(topic)} ({policy}): {fix}")


def create_output_publishers(node: Any, reliability: str, depth: int, warnings: OutputQosWarnings) -> dict[str, Any]:
    """The lifecycle node's publishers: esnet/<output> (``output_qos.*``), the latched class map and label info."""
    overrides = QoSOverridingOptions.with_default_policies()
    qos = output_qos(reliability, depth)
    pubs = {
        name: node.create_lifecycle_publisher(
            SegmentationStats if name == "stats" else Image,
            f"esnet/{name}",
            qos,
            qos_overriding_options=overrides,
            event_callbacks=warnings.callbacks(f"esnet/{name}"),
        )
        for name in OUTPUTS
    }
    pubs["class_map"] = node.create_lifecycle_publisher(ClassMap, "esnet/class_map", LATCHED)
    if LabelInfo is not None:
        pubs["label_info"] = node.create_lifecycle_publisher(LabelInfo, "esnet/label_info", LATCHED)
        node.get_logger().info("vision_msgs found: publishing esnet/label_info (vision_msgs/LabelInfo)")
    else:
        node.get_logger().info("vision_msgs is not installed: esnet/label_info is not published (esnet/class_map is)")
    return pubs


class InputSubscription:
    """The camera subscription of ``node``: created, re-checked against the graph, and destroyed.

    ``values`` returns the node's current parameter values; ``callback(msg, info)`` gets each frame.
    """

    def __init__(self, node: Node, values: Callable[[], dict[str, Any]], callback: Callable[..., None]) -> None:
        self.node = node
        self.values = values
        self.callback = callback
        self.sub: Any = None
        self.reliability: ReliabilityPolicy | None = None
        self.dirty = False
        self.warned: set[str] = set()

    @property
    def topic_name(self) -> str | None:
        return self.sub.topic_name if self.sub is not None else None

    def topic(self) -> tuple[str, type]:
        values = self.values()
        topic = str(values["image_topic"]).strip()
        if values["input_transport"] == "compressed":
            return topic.rstrip("/") + "/compressed", CompressedImage
        return topic, Image

    def create(self, reliability: ReliabilityPolicy | None = None, reason: str = "") -> None:
        """(Re)create the subscription with the parameters' QoS (auto: the publishers', or ``reliability``)."""
        values, node = self.values(), self.node
        topic, msg_type = self.topic()
        resolved = node.resolve_topic_name(topic)
        mode = values["input_qos.reliability"]
        given = self.user_overrides(resolved)
        pinned = given.get("reliability")
        if pinned is not None:
            reliability, reason = (
                reliability_policy(pinned),
                f"qos_overrides.{resolved}.subscription.reliability={pinned}",
            )
        elif mode != "auto":
            reliability, reason = reliability_policy(mode), f"input_qos.reliability={mode}"
        elif reliability is None:
            reliability, reason = self.auto_reliability(resolved)
            if reliability is None:
                reliability = ReliabilityPolicy.BEST_EFFORT
                reason = (
                    f"no publisher on {resolved} yet: best effort matches any camera; re-checked when one "
                    f"appears (input_qos.reliability=auto)"
                )
        qos = QoSProfile(
            depth=int(given.get("depth", values["input_qos.depth"])),
            history=HistoryPolicy.KEEP_LAST,
            reliability=reliability,
            durability=DurabilityPolicy.VOLATILE,
        )
        self.destroy()
        self.sub = node.create_subscription(
            msg_type,
            topic,
            self.callback,
            qos,
            event_callbacks=SubscriptionEventCallbacks(incompatible_qos=self.on_incompatible),
        )
        self.reliability = self.sub.qos_profile.reliability
        self.dirty = False
        node.get_logger().info(
            f"subscribed to {self.sub.topic_name} ({msg_type.__name__}, {reliability_name(self.reliability)}, "
            f"depth {self.sub.qos_profile.depth}): {reason}"
        )

    def destroy(self) -> None:
        if self.sub is not None:
            self.node.destroy_subscription(self.sub)
            self.sub = None

    def user_overrides(self, resolved: str) -> dict[str, Any]:
        """The ``qos_overrides.<topic>.subscription.{reliability,depth}`` the user gave (rclpy's names).

        Declared here, read-only, with an "unset" default ("" and 0), so that a value the user gave is told
        apart from none (rclpy's own QoSOverridingOptions would declare the profile's values instead)."""
        given = {}
        for policy, unset in (("reliability", ""), ("depth", 0)):
            name = f"qos_overrides.{resolved}.subscription.{policy}"
            if not self.node.has_parameter(name):
                self.node.declare_parameter(
                    name,
                    unset,
                    descriptor(
                        f"The camera subscription's {policy} on {resolved}, pinned (input_qos.* no longer decide it); "
                        f"{unset!r}: not pinned.",
                        read_only=True,
                    ),
                )
            value = self.node.get_parameter(name).value
            if value != unset:
                given[policy] = value
        return given

    def auto_reliability(self, resolved: str) -> tuple[ReliabilityPolicy | None, str]:
        infos = self.node.get_publishers_info_by_topic(resolved)
        if not infos:
            return None, ""
        reliable = [i for i in infos if i.qos_profile.reliability == ReliabilityPolicy.RELIABLE]
        names = ", ".join(sorted({f"{i.node_namespace.rstrip('/')}/{i.node_name}" for i in infos}))
        if reliable:
            return ReliabilityPolicy.RELIABLE, (
                f"{len(reliable)} of {len(infos)} publisher(s) ({names}) offer reliable: subscribing reliable, "
                f"because a best-effort connection loses most frames larger than ~0.5 MB on default Fast DDS "
                f"(input_qos.reliability=auto)"
            )
        return ReliabilityPolicy.BEST_EFFORT, (
            f"all {len(infos)} publisher(s) ({names}) are best effort: subscribing best effort, because a reliable "
            f"subscription would not match them (input_qos.reliability=auto)"
        )

    def check(self) -> None:
        """Recreate the subscription when its topic/QoS parameters or the camera's reliability changed."""
        if self.dirty or self.sub is None:
            self.create()
            return
        if self.values()["input_qos.reliability"] != "auto" or "reliability" in self.user_overrides(
            self.sub.topic_name
        ):
            return
        wanted, reason = self.auto_reliability(self.sub.topic_name)
        if wanted is not None and wanted != self.reliability:
            self.create(wanted, reason)

    def on_incompatible(self, event: Any) -> None:
        policy = policy_name(event.last_policy_kind)
        if self.values()["input_qos.reliability"] == "auto" and policy == "RELIABILITY":
            self.check()  # auto mode: simply follow the camera
            return
        if policy in self.warned:
            return
        self.warned.add(policy)
        topic = self.sub.topic_name if self.sub is not None else self.topic()[0]
        if policy == "RELIABILITY":
            fix = (
                "the camera publishes best effort but this node subscribes reliable: set "
                "input_qos.reliability:=best_effort (or auto), or make the camera publish reliable"
            )
        else:
            fix = f"the camera's {policy.lower()} policy does not match; align it or set the matching qos_overrides"
        self.node.get_logger().warning(f"incompatible QoS on {topic} ({policy}): {fix}")
