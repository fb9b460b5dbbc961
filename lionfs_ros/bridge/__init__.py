"""The WebSocket bridge: the assistant's topics for apps without ROS (ROS-free core; the node is nodes/bridge_node.py).

`server.BridgeServer` speaks the Foxglove WebSocket protocol through `foxglove-sdk`: JSON channels
for our messages, Foxglove's CompressedImage and ImageAnnotations for the camera and the overlay;
`web.PageServer` serves the live overlay page (resources/web/) over HTTP. See docs/BRIDGE.md.
"""
