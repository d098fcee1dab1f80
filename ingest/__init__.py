"""Ingest: frames from webcams, RTSP/HTTP streams, video files, images and folders onto Redis Streams."""
