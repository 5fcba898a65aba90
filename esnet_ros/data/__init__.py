"""Data: datasets, transforms and procedural street scenes. No ROS."""
