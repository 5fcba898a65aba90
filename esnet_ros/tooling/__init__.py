"""Tools around the node: the demo, soak and node benchmark, the synthetic and replay cameras, the DDS
monitor and the child-process harness (none of it runs inside the node)."""
