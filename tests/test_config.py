"""Config loading: layered resolution, overrides, one-line errors, stable hashes."""

import pytest

from rdbench.config import (
    ConfigError,
    apply_overrides,
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
