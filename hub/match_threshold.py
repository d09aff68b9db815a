"""The 1:N match threshold, following the gallery size unless the hub config fixes it.

The chance that a stranger resembles *some* template grows with the number of templates,
so the threshold that keeps strangers named at most 1% of the time (FPIR <= 1%) rises with
the gallery: ``ringwatch.models.identification.threshold_for_gallery`` (calibrated with
``ringwatch faces eval-identification``, docs/faces.md). ``matching.gallery_size`` in the
hub config says what size to calibrate for (e.g. the size the watch list is expected to
reach); unset, the number of templates currently matchable is used. A
``matching.threshold`` written in the config is used as it is.
"""

from __future__ import annotations

from ringwatch.hub.inventory import MatchingConfig
from ringwatch.models.identification import threshold_for_gallery


def match_threshold(config: MatchingConfig, templates: int) -> float:
    """The cosine a face must reach to match, for a gallery of ``templates`` templates."""
    if config.threshold is not None:
        return config.threshold
    return threshold_for_gallery(config.gallery_size or templates)
