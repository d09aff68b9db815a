from __future__ import annotations

import datetime as dt
import urllib.error
import urllib.request

import pytest

from ringwatch.contract.messages import CameraHealth, Health
from ringwatch.edge.health import prometheus_text
from ringwatch.edge.metrics import MetricsServer


def test_metrics_endpoint_serves_the_latest_heartbeat() -> None:
    server = MetricsServer("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"# no heartbeat yet\n"
        health = Health(
            site="s",
            device="d",
            at=dt.datetime(2026, 11, 25, tzinfo=dt.UTC),
            agent_version="0.1.0",
            uptime_s=12,
            cameras=[
                CameraHealth(
                    camera="gate",
                    online=False,
                    fps=0,
                    latency_ms=0,
                    dropped_frames=3,
                    reconnects=2,
                )
            ],
            outbox_depth=7,
            outbox_dropped=0,
        )
        server.publish(prometheus_text(health))
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        assert 'ringwatch_outbox_depth{site="s",device="d"} 7' in text
        assert 'ringwatch_camera_online{site="s",device="d",camera="gate"} 0' in text
        assert 'ringwatch_camera_reconnects_total{site="s",device="d",camera="gate"} 2' in text
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=5)
        assert info.value.code == 404
        info.value.close()
    finally:
        server.close()
