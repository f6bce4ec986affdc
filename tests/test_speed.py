from __future__ import annotations

import pytest

from mriaug import speed
from mriaug.errors import SettingError


def test_defaults_channels_last_on_the_cpu_only_for_conv_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MRIAUG_CHANNELS_LAST", raising=False)
    monkeypatch.delenv("MRIAUG_COMPILE", raising=False)
    s = speed.settings()
    assert s == speed.Speed("auto", False)
    assert s.channels_last_for("cpu", "cnn") and s.channels_last_for("cpu", "resnet18")
    assert not s.channels_last_for("cuda", "cnn") and not s.channels_last_for("cpu", "vit")


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRIAUG_CHANNELS_LAST", "1")
    monkeypatch.setenv("MRIAUG_COMPILE", "1")
    s = speed.settings()
    assert s.compile and s.channels_last_for("cuda", "resnet18") and not s.channels_last_for("cuda", "vit")
    monkeypatch.setenv("MRIAUG_CHANNELS_LAST", "0")
    assert not speed.settings().channels_last_for("cpu", "cnn")
    monkeypatch.setenv("MRIAUG_COMPILE", "yes")
    with pytest.raises(SettingError, match="MRIAUG_COMPILE='yes'"):
        speed.settings()
