"""Dataset digests and logged-model checks, without MLflow."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rdbench.config import ConfigError
from rdbench.systems import records
from rdbench.systems.records import LoggedModel, digest, is_logged_model, load_logged_model


def test_digest_covers_every_value_shape_and_dtype(monkeypatch):
    a = np.arange(1000, dtype=np.uint8)
    assert digest(a) == digest(torch.as_tensor(a))
    monkeypatch.setattr(records, "DIGEST_CHUNK_BYTES", 7)  # chunked hashing gives the same digest
    assert digest(torch.as_tensor(a)) == digest(a)
    b = a.copy()
    b[-1] += 1
    assert digest(b) != digest(a)
    assert digest(a.reshape(10, 100)) != digest(a) and digest(a.astype(np.int16)) != digest(a)


def test_logged_model_references():
    assert is_logged_model("runs:/abc/model") and is_logged_model("models:/m-1")
    assert not is_logged_model(None) and not is_logged_model("google/ddpm-cifar10-32")


def test_a_folder_without_rdbench_files_is_refused(tmp_path):
    (tmp_path / "MLmodel").write_text("flavors: {}\n")
    assert is_logged_model(str(tmp_path))
    with pytest.raises(ConfigError, match="not a model logged by rdbench"):
        load_logged_model(str(tmp_path), "lstm")


def test_require_names_the_first_differing_leaf(tmp_path):
    logged = LoggedModel("x", {"model": {"channels": [8, 16], "heads": 2}, "profile": "smoke", "case": "digits"},
                         tmp_path)
    logged.require({"model": {"channels": (8, 16), "heads": 2}})  # tuples compare as JSON lists
    with pytest.raises(ConfigError) as err:
        logged.require({"model": {"channels": [8, 8], "heads": 2}})
    assert str(err.value) == ("--model x: it was trained with model.channels=[8, 16] but these settings have "
                              "model.channels=[8, 8]; run with the profile and settings it was trained with "
                              "(profile 'smoke', case 'digits')")
    assert json.loads(json.dumps(logged.config)) == logged.config
