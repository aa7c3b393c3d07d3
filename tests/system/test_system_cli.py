from typer.testing import CliRunner

from gelato.cli.system_cmd import app
from gelato.system.compute import MeasuredProfile

runner = CliRunner()
WIDE = {"COLUMNS": "240"}


def test_show_paper_prints_model_and_hand_calculation():
    r = runner.invoke(app, ["show", "--paper"], env=WIDE)
    assert r.exit_code == 0, r.output
    out = r.output
    assert "581,167,104" in out  # FLOPs per draft token at L = 100
    assert "0.0145 s" in out and "0.1744 J" in out
    assert "37.36 dB" in out and "12.4116 Mbit/s" in out  # 1 MHz
    assert "27.36 dB" in out and "90.9203 Mbit/s" in out  # 10 MHz
    assert "log10(0.175)" in out
    assert "NO (" not in out and out.count("yes") >= 6


def test_show_generic_and_options():
    r = runner.invoke(app, ["show", "-b", "2", "--device", "snapdragon-8-gen-3-phone", "--context", "50"], env=WIDE)
    assert r.exit_code == 0, r.output
    assert "2 MHz" in r.output and "L = 50" in r.output and "NO (" not in r.output
    bad = runner.invoke(app, ["show", "--device", "nokia-3310"], env=WIDE)
    assert bad.exit_code != 0


def test_presets_lists_sources():
    r = runner.invoke(app, ["presets"], env=WIDE)
    assert r.exit_code == 0
    assert "jetson-orin-nano-8gb-15w" in r.output and "Table I" in r.output


def test_calibrate_tiny(tmp_path):
    out = tmp_path / "prof.json"
    r = runner.invoke(app, ["calibrate", "--tiny", "--repeats", "1", "--out", str(out), "--scale", "2"], env=WIDE)
    assert r.exit_code == 0, r.output
    prof = MeasuredProfile.load(out)
    assert prof.scale == 2.0 and prof.forward_seconds(1, 16) > 0
