from __future__ import annotations

import pytest

from mriaug.engine import speed
from mriaug.errors import SettingError
from mriaug.plan.hparams import MODELS


def conv(model: str) -> bool:
    return MODELS[model].channels_last


def test_the_cards_say_channels_last_pays_for_the_conv_models() -> None:
    assert [conv(m) for m in ("cnn", "resnet18", "vit")] == [True, True, False]


def test_defaults_channels_last_on_the_cpu_only_for_conv_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MRIAUG_CHANNELS_LAST", raising=False)
    monkeypatch.delenv("MRIAUG_COMPILE", raising=False)
    s = speed.settings()
    assert s == speed.Speed("auto", False)
    assert s.channels_last_for("cpu", conv("cnn")) and s.channels_last_for("cpu", conv("resnet18"))
    assert not s.channels_last_for("cuda", conv("cnn")) and not s.channels_last_for("cpu", conv("vit"))


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MRIAUG_CHANNELS_LAST", "1")
    monkeypatch.setenv("MRIAUG_COMPILE", "1")
    s = speed.settings()
    assert s.compile and s.channels_last_for("cuda", conv("resnet18")) and not s.channels_last_for("cuda", conv("vit"))
    monkeypatch.setenv("MRIAUG_CHANNELS_LAST", "0")
    assert not speed.settings().channels_last_for("cpu", conv("cnn"))
    monkeypatch.setenv("MRIAUG_COMPILE", "yes")
    with pytest.raises(SettingError, match="MRIAUG_COMPILE='yes'"):
        speed.settings()


def test_checkpoint_and_determinism_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MRIAUG_CHECKPOINT", "MRIAUG_DETERMINISTIC"):
        monkeypatch.delenv(name, raising=False)
    s = speed.settings()
    assert s.checkpoint == "auto" and s.deterministic
    monkeypatch.setenv("MRIAUG_CHECKPOINT", "epoch")
    monkeypatch.setenv("MRIAUG_DETERMINISTIC", "0")
    s = speed.settings()
    assert s.checkpoint == "epoch" and not s.deterministic
    monkeypatch.setenv("MRIAUG_CHECKPOINT", "sometimes")
    with pytest.raises(SettingError, match="MRIAUG_CHECKPOINT='sometimes'"):
        speed.settings()


def test_checkpoint_schedule_keeps_saves_to_a_tenth_of_the_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from mriaug.engine import checkpoints

    clock = [100.0]
    monkeypatch.setattr(checkpoints.time, "perf_counter", lambda: clock[0])
    p = checkpoints.Schedule("auto")
    assert p.due()  # the first epoch always saves: its cost is not known yet
    started = clock[0]
    clock[0] += 2.0  # a save that took 2 s
    p.saved(started)
    clock[0] += 19.0
    assert not p.due()  # 19 s of training after a 2 s save: a save now would cost more than a tenth
    clock[0] += 1.0
    assert p.due()
    every = checkpoints.Schedule("epoch")
    every.saved(clock[0] - 5.0)
    assert every.due()
    assert speed.CheckpointPacer is checkpoints.Schedule  # the old name, which train.py still uses
