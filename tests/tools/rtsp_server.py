"""A real RTSP server for the capture tests: GStreamer's gst-rtsp-server, endless live video.

Run with Debian's Python (its GObject bindings do not install into a venv):
    /usr/bin/python3 tests/tools/rtsp_server.py PORT [PATH]
Serves rtsp://127.0.0.1:PORT/PATH (default "live"): a moving test pattern, 320x240 at 10 fps,
H.264 (openh264). Prints "ready" once listening; SIGTERM/SIGKILL end it, SIGSTOP hangs it.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

PIPELINE = (
    "( videotestsrc is-live=true pattern=ball "
    "! video/x-raw,width=320,height=240,framerate=10/1 "
    "! openh264enc gop-size=10 ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )"
)


def main() -> None:
    port, path = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "live"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(True)
    server.get_mount_points().add_factory("/" + path, factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on port {port}")
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    print("ready", flush=True)
    loop.run()


if __name__ == "__main__":
    main()
