"""Live dashboard (Flask-SocketIO): live wall, browser camera, acting challenge, charts, image mode."""
