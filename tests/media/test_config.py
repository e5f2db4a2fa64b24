"""PDQ match bounds in the configuration: the default, per category, and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from takedown import config
from takedown.config import PdqThreshold
from takedown.errors import InputError


def test_defaults_and_per_category(tmp_path: Path) -> None:
    assert config.load().pdq_threshold("csam") == PdqThreshold(31, 50)
    f = tmp_path / "c.toml"
    f.write_text("[pdq]\nmin_quality = 60\n[pdq.categories.csam]\nmax_distance = 20\n")
    cfg = config.load(f)
    assert cfg.pdq_threshold("csam") == PdqThreshold(20, 60)  # the rest from [pdq]
    assert cfg.pdq_threshold("drugs") == PdqThreshold(31, 60)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[pdq]\nmax_distance = 300\n", "pdq.max_distance"),
        ("[pdq]\nmin_quality = true\n", "pdq.min_quality"),
        ("[pdq]\nradius = 3\n", "pdq"),
        ("[pdq.categories.nope]\nmax_distance = 3\n", "pdq.categories"),
        ("[pdq.categories.csam]\nmax_distance = -1\n", "pdq.categories.csam.max_distance"),
    ],
)
def test_bad_bounds_name_the_key(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(InputError) as err:
        config.load(f)
    assert err.value.where == f"{f}: {where}"
