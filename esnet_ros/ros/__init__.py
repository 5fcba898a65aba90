"""ROS 2: the node and everything that imports rclpy or message packages."""
