"""Config loading: layered resolution, overrides, one-line errors, stable hashes, untrusted files."""

import sys

import pytest
from click.testing import CliRunner

from rdbench.cli import main
from rdbench.config import (
    ConfigError,
    apply_overrides,
    conf_dir,
    config_hash,
    load_system,
    parse_assignment,
    read_yaml,
)


def test_layers_resolve_in_order_settings_profile_case_overrides():
    conf = load_system("rd")
    paper = conf.resolve("spot")
    smoke = conf.resolve("stripe", "smoke", {"initial.noise": 0.5})
    assert paper.grid_size == 200 and paper.feed == 0.029
    assert smoke.grid_size == 32 and smoke.initial.square_size == 6  # profile, nested merge
    assert smoke.initial.square_u == 0.5 and smoke.feed == 0.055  # untouched keys kept, case applied
    assert smoke.initial.noise == 0.5  # command-line override last


def test_parse_assignment_reads_yaml_values():
    assert parse_assignment("steps=10") == ("steps", 10)
    assert parse_assignment("a.b=[1, 2]") == ("a.b", [1, 2])
    assert parse_assignment("name=spot") == ("name", "spot")
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignment("novalue")


def test_apply_overrides_does_not_touch_the_base():
    base = {"a": {"b": 1}}
    out = apply_overrides(base, {"a.c": 2})
    assert out == {"a": {"b": 1, "c": 2}} and base == {"a": {"b": 1}}


def test_a_misspelt_key_is_reported_as_unknown_not_missing(tmp_path):
    text = open(load_system("rd").source).read()
    bad = tmp_path / "rd.yaml"
    bad.write_text(text.replace("default_case:", "default_cse:"))
    with pytest.raises(ConfigError, match="unknown key 'default_cse'; allowed keys: case_kinds, case_label, cases, default_case"):
        load_system("rd", bad)


def test_non_mapping_yaml_is_rejected(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        read_yaml(bad)


def test_config_hash_is_stable_and_sensitive():
    conf = load_system("rd")
    a = conf.resolve("spot", "smoke")
    assert config_hash("rd", "spot", 0, a) == config_hash("rd", "spot", 0, conf.resolve("spot", "smoke"))
    assert config_hash("rd", "spot", 0, a) != config_hash("rd", "spot", 1, a)
    assert config_hash("rd", "spot", 0, a) != config_hash("rd", "spot", 0, conf.resolve("spot", "smoke", {"steps": 61}))


# --------------------------------------------------------------------------- untrusted config files


def write_system_file(folder, plugin: str) -> str:
    text = (conf_dir() / "systems" / "rd.yaml").read_text().replace(
        "plugin: rdbench.systems.grayscott:GrayScott", f"plugin: {plugin}")
    path = folder / "rd.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def booby_trapped_module(tmp_path, monkeypatch):
    """A module on sys.path that leaves a marker file if anything imports it."""
    marker = tmp_path / "imported"
    (tmp_path / "trap_plugin_mod.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nclass Trap:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield marker
    sys.modules.pop("trap_plugin_mod", None)


@pytest.mark.parametrize("plugin", ["trap_plugin_mod:Trap", "os:getpid", "rdbench.systemsx.evil:X"])
def test_a_config_file_cannot_make_rdbench_import_code_from_outside(plugin, tmp_path, booby_trapped_module):
    path = write_system_file(tmp_path, plugin)
    result = CliRunner().invoke(main, ["run", "rd", "--config", path, "--profile", "smoke"])
    assert result.exit_code == 2, result.output
    assert "is outside rdbench.systems" in result.output and "--trust-plugin" in result.output
    assert not booby_trapped_module.exists() and "trap_plugin_mod" not in sys.modules


def test_the_conf_dir_variable_is_held_to_the_same_rule(tmp_path, booby_trapped_module, monkeypatch):
    (tmp_path / "systems").mkdir()
    write_system_file(tmp_path / "systems", "trap_plugin_mod:Trap")
    monkeypatch.setenv("RDBENCH_CONF_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="outside rdbench.systems"):
        load_system("rd").plugin_class()
    assert not booby_trapped_module.exists()


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/x", "rd/../../x", "RD", "rd.yaml", ""])
def test_system_names_are_names_not_paths(name):
    with pytest.raises(ConfigError, match="bad system name"):
        load_system(name)


def test_a_grid_file_naming_a_path_as_system_is_refused(tmp_path):
    from rdbench.study.grid import plan_grid

    path = tmp_path / "g.yaml"
    path.write_text("description: d\nprofile: smoke\nseeds: [0]\ncells:\n  - {system: ../../tmp/evil, cases: [x]}\n")
    with pytest.raises(ConfigError, match=r"cells\[0\].*bad system name '../../tmp/evil'"):
        plan_grid(path)


def test_a_trusted_module_must_still_hold_a_system(tmp_path, booby_trapped_module):
    path = write_system_file(tmp_path, "trap_plugin_mod:Trap")
    result = CliRunner().invoke(main, ["--trust-plugin", "trap_plugin_mod", "run", "rd", "--config", path])
    assert result.exit_code == 2 and "is not a rdbench System subclass" in result.output, result.output


def test_a_trusted_plugin_module_runs(tmp_path, monkeypatch, experiment, mlflow_client, runs_of):
    (tmp_path / "my_rd_plugin.py").write_text(
        "from rdbench.systems.grayscott import GrayScott\n\nclass MyGrayScott(GrayScott):\n    name = 'rd'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = write_system_file(tmp_path, "my_rd_plugin:MyGrayScott")
    result = CliRunner().invoke(main, ["--trust-plugin", "my_rd_plugin", "run", "rd", "--config", path,
                                       "--profile", "smoke", "--experiment", experiment])
    assert result.exit_code == 0, result.output
    (run,) = runs_of(mlflow_client, experiment)
    assert run.info.status == "FINISHED"


def test_parametric_cases_resolve_from_the_system_file(tmp_path):
    """A case KIND:ARG resolves like a named case whose overrides are the kind's template with {arg} filled in."""
    from rdbench.config import Settings

    class Source(Settings):
        path: str
        tags: list[str]

    class Demo(Settings):
        kind: str
        source: Source | None = None
        rows: int | None

    (tmp_path / "demo.yaml").write_text(
        "plugin: x:Y\ndefault_case: plain\ncase_label: input\n"
        "settings: {kind: plain, rows: 10}\n"
        "cases: {plain: {}}\n"
        "case_kinds:\n"
        "  file: {kind: file, rows: null, source: {path: '{arg}', tags: ['from {arg}', fixed]}}\n"
    )
    conf = load_system("demo", tmp_path / "demo.yaml")
    s = conf.resolve("file:/data/runs/a.csv", overrides={"rows": 3}, settings_model=Demo)
    assert s.kind == "file" and s.rows == 3  # the command line still overrides the case
    assert s.source.path == "/data/runs/a.csv" and s.source.tags == ["from /data/runs/a.csv", "fixed"]
    assert conf.resolve("file:b.csv", settings_model=Demo).rows is None
    assert conf.case_label("file:/data/runs/a.csv") == "file:a.csv" and conf.case_label("plain") == "plain"
    assert conf.case_forms() == ["plain", "file:<source.path>"]
    with pytest.raises(ConfigError, match=r"unknown input 'other:x' for system 'demo'; allowed: plain, file:<source.path>"):
        conf.resolve("other:x", settings_model=Demo)
    with pytest.raises(ConfigError, match=r"input 'file:' for system 'demo': file: needs an argument after the colon"):
        conf.resolve("file:", settings_model=Demo)
