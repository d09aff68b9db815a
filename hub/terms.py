"""The words for the values alerts and case files show (incident kinds, colours, levels,
rings, statuses, stages...), per language: English ("en") and Simplified Chinese ("zh-CN").

The Chinese terms are the programme's own (the shared GLOSSARY-zh.md): 红色预警,
三道防控圈 外圈 / 周界圈 / 内圈, 签收, 到场, 结束处置, 比中... Used by
:mod:`ringwatch.hub.notify` (e-mail, SMS/IM) and :mod:`ringwatch.hub.export` (the case
file's summary). Both languages have the same keys (tests/test_hub_notify.py checks).
"""

from __future__ import annotations

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
LANGUAGE_PATTERN = "^(" + "|".join(LANGUAGES) + ")$"

# Keys are the stored values, prefixed by what they are: "kind:", "colour:", "level:",
# "ring:", "status:", "stage:", "role:", "media:".
TERMS: dict[str, dict[str, str]] = {
    "en": {
        "kind:watchlist": "watch-list match", "kind:intrusion": "zone intrusion",
        "kind:loitering": "loitering",
        "kind:shed": "e-bike shed alert", "kind:device_offline": "device offline",
        "kind:camera_offline": "camera offline", "kind:outbox_growing": "upload backlog",
        "kind:camera_tamper": "camera tamper",
        "colour:yellow": "YELLOW", "colour:orange": "ORANGE", "colour:red": "RED",
        "colour:green": "GREEN",
        "level:warning": "WARNING", "level:alarm": "ALARM",
        "ring:outer": "outer", "ring:perimeter": "perimeter", "ring:inner": "inner",
        "ring:shed": "shed",
        "status:open": "open", "status:confirmed": "confirmed", "status:rejected": "rejected",
        "status:closed": "closed",
        "stage:acknowledged": "acknowledged", "stage:patrol_on_scene": "patrol on scene",
        "stage:station_on_scene": "station on scene", "stage:onsite_check": "on-site check",
        "stage:fire_service_called": "fire service called",
        "role:sighting": "sighting", "role:event": "event", "role:person": "key person",
        "media:clip": "clip", "media:snapshot": "snapshot", "media:crop": "live crop",
    },
    "zh-CN": {
        "kind:watchlist": "重点人员比中", "kind:intrusion": "区域入侵",
        "kind:loitering": "徘徊",
        "kind:shed": "电动车智慧停车棚告警", "kind:device_offline": "设备离线",
        "kind:camera_offline": "摄像机离线", "kind:outbox_growing": "设备上传积压",
        "kind:camera_tamper": "摄像机遮挡或移位",
        "colour:yellow": "黄色预警", "colour:orange": "橙色预警", "colour:red": "红色预警",
        "colour:green": "绿色",
        "level:warning": "预警", "level:alarm": "报警",
        "ring:outer": "外圈", "ring:perimeter": "周界圈", "ring:inner": "内圈",
        "ring:shed": "停车棚",
        "status:open": "处置中", "status:confirmed": "已确认", "status:rejected": "已排除",
        "status:closed": "已结束处置",
        "stage:acknowledged": "签收", "stage:patrol_on_scene": "巡逻警力到场",
        "stage:station_on_scene": "派出所民警到场", "stage:onsite_check": "现场核查",
        "stage:fire_service_called": "已通知消防",
        "role:sighting": "人像比中", "role:event": "事件", "role:person": "重点人员",
        "media:clip": "录像片段", "media:snapshot": "快照", "media:crop": "抓拍图",
    },
}  # fmt: skip


def term(language: str, what: str, value: str | None) -> str:
    """The word for ``value`` (a stored kind, colour, ring...) in ``language``; the value
    itself when there is none (a configured stage name, say), "" for None."""
    if value is None:
        return ""
    words = TERMS.get(language, TERMS[DEFAULT_LANGUAGE])
    return words.get(f"{what}:{value}", value)
