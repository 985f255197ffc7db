"""The registry finds encoders through real entry-point metadata, built-in and third-party alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import encoders
from encoders import (
    DuplicateEncoder,
    EncoderConfigError,
    EncoderError,
    EncoderInputError,
    EncoderKind,
    EncoderNotFound,
    EncoderSpec,
    EncoderUnavailable,
)
from encoders.hashing import HashEncoder, HashTokensEncoder
from encoders.sentence_transformers import SentenceTransformerEncoder, SentenceTransformerTokensEncoder

BUILTINS: dict[str, type[encoders.BaseEncoder[Any]]] = {
    "hash": HashEncoder,
    "hash-tokens": HashTokensEncoder,
    "sentence-transformers": SentenceTransformerEncoder,
    "sentence-transformers-tokens": SentenceTransformerTokensEncoder,
}

# A third-party encoder that owes nothing to Nestor's base classes: only the protocol.
PLUGIN_SOURCE = textwrap.dedent(
    """
    import numpy as np
    from pydantic import BaseModel

    from encoders.base import Embeddings, EncoderKind, EncoderSpec


    class ConstantConfig(BaseModel):
        dim: int = 4
        value: float = 0.5


    class ConstantEncoder:
        name = "{name}"
        kind = EncoderKind.dense
        config_model = ConstantConfig
        max_batch_size = 8
        max_tokens_per_batch = None

        def __init__(self, config):
            self.config = config
            self.dim = config.dim

        def spec(self):
            return EncoderSpec(name=self.name, config=self.config.model_dump())

        def embed_documents(self, texts):
            vectors = np.full((len(texts), self.dim), self.config.value, dtype=np.float32)
            return Embeddings(self.kind, self.dim, vectors, {{}})

        embed_query = embed_documents


    NOT_AN_ENCODER = 42
    """
)


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    encoders.clear_cache()
    yield
    encoders.clear_cache()


class FakeSite:
    """A directory on sys.path holding installed-looking distributions (`*.dist-info`)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: list[str] = []

    def add_distribution(self, dist: str, entry_points: dict[str, str], *, encoder_name: str = "") -> str:
        """Write a plugin module plus a dist-info declaring `entry_points` (name -> 'module:attr',
        where 'module' is replaced by the generated module's name). Returns the module name."""
        module = f"nestor_test_plugin_{uuid.uuid4().hex[:12]}"
        (self.root / f"{module}.py").write_text(PLUGIN_SOURCE.format(name=encoder_name or dist))
        self.modules.append(module)
        info = self.root / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        lines = [f"{name} = {target.replace('module', module, 1)}" for name, target in entry_points.items()]
        (info / "entry_points.txt").write_text("[nestor.encoders]\n" + "\n".join(lines) + "\n")
        return module


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    fake = FakeSite(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # also invalidates import caches
    yield fake
    for module in fake.modules:
        sys.modules.pop(module, None)


def test_builtins_are_registered_as_entry_points() -> None:
    registered = {ep.name: ep.value for ep in entry_points(group=encoders.GROUP)}
    for name, cls in BUILTINS.items():
        assert registered[name] == f"{cls.__module__}:{cls.__qualname__}"
    assert set(BUILTINS) <= set(encoders.available_encoders())


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_builtins_found_by_name(name: str) -> None:
    assert encoders.load_encoder(name) is BUILTINS[name]  # type: ignore[comparison-overlap]
    assert BUILTINS[name].name == name


def test_create_hash_by_name_and_spec() -> None:
    enc = encoders.create_encoder("hash", {"dim": 32})
    assert isinstance(enc, HashEncoder)
    assert (enc.kind, enc.dim) == (EncoderKind.dense, 32)
    spec = enc.spec()
    assert spec.name == "hash" and spec.config["dim"] == 32 and spec.config["seed"] == 0
    # The persisted spec rebuilds an identical encoder.
    again = encoders.create_encoder(EncoderSpec.model_validate_json(spec.model_dump_json()))
    text = ["the spec round trip"]
    np.testing.assert_array_equal(again.embed_documents(text).dense(), enc.embed_documents(text).dense())


def test_normalize_spec_fills_defaults_without_building() -> None:
    spec = encoders.normalize_spec("hash", {"dim": 64})
    assert spec == encoders.create_encoder("hash", {"dim": 64}).spec()
    assert encoders.normalize_spec(spec) == spec


def test_get_shares_one_instance_per_normalized_config() -> None:
    a = encoders.get_encoder("hash", {"dim": 16})
    assert encoders.get_encoder("hash", {"dim": 16, "seed": 0}) is a
    assert encoders.get_encoder("hash", {"dim": 17}) is not a
    assert encoders.create_encoder("hash", {"dim": 16}) is not a


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(EncoderNotFound, match="no encoder named 'nope'.*hash") as info:
        encoders.create_encoder("nope")
    assert (info.value.status, info.value.type, info.value.name) == (404, "encoder_not_found", "nope")


@pytest.mark.parametrize(
    "config",
    [{"dim": 1}, {"dim": "wide"}, {"dimension": 8}, {"seed": -1}],
    ids=["too-small", "wrong-type", "unknown-key", "negative-seed"],
)
def test_bad_config_is_a_config_error(config: dict[str, object]) -> None:
    with pytest.raises(EncoderConfigError, match="invalid config for encoder 'hash'") as info:
        encoders.create_encoder("hash", config)
    assert (info.value.status, info.value.type) == (422, "invalid_encoder_config")


def test_error_statuses_and_types() -> None:
    assert (EncoderError.status, EncoderError.type) == (500, "encoder_error")
    assert (EncoderUnavailable.status, EncoderUnavailable.type) == (503, "encoder_unavailable")
    assert (DuplicateEncoder.status, DuplicateEncoder.type) == (500, "duplicate_encoder")
    err = EncoderInputError({3: "text is empty"})
    assert (err.status, err.type, err.errors) == (422, "invalid_encoder_input", {3: "text is empty"})
    for cls in (EncoderNotFound, EncoderConfigError, EncoderInputError, EncoderUnavailable, DuplicateEncoder):
        assert issubclass(cls, EncoderError)


def test_third_party_encoder_found_through_entry_point_metadata(site: FakeSite) -> None:
    assert "constant" not in encoders.available_encoders()
    site.add_distribution("nestor-constant", {"constant": "module:ConstantEncoder"}, encoder_name="constant")
    # Discovery is cached: a plugin installed into a running process appears after clear_cache().
    assert "constant" not in encoders.available_encoders()
    encoders.clear_cache()
    assert "constant" in encoders.available_encoders()
    assert set(BUILTINS) <= set(encoders.available_encoders())

    enc = encoders.create_encoder("constant", {"dim": 3})
    assert enc.spec() == EncoderSpec(name="constant", config={"dim": 3, "value": 0.5})
    out = enc.embed_documents(["a", "b"])
    np.testing.assert_array_equal(out.dense(), np.full((2, 3), 0.5, dtype=np.float32))
    ep = next(ep for ep in entry_points(group=encoders.GROUP) if ep.name == "constant")
    assert ep.dist is not None and ep.dist.name == "nestor-constant"


def test_duplicate_names_are_an_error(site: FakeSite) -> None:
    site.add_distribution("nestor-dup-a", {"twin": "module:ConstantEncoder"})
    site.add_distribution("nestor-dup-b", {"twin": "module:ConstantEncoder"})
    encoders.clear_cache()
    with pytest.raises(DuplicateEncoder, match="'twin' is registered twice") as info:
        encoders.create_encoder("twin")
    assert "(from nestor-dup-a)" in info.value.message and "(from nestor-dup-b)" in info.value.message
    assert info.value.status == 500


def test_plugin_may_not_take_a_builtin_name(site: FakeSite) -> None:
    site.add_distribution("nestor-impostor", {"hash": "module:ConstantEncoder"})
    encoders.clear_cache()
    with pytest.raises(DuplicateEncoder, match="'hash' is registered twice"):
        encoders.available_encoders()


def test_broken_plugins_fail_alone_and_clearly(site: FakeSite) -> None:
    site.add_distribution(
        "nestor-broken",
        {
            "missing-module": "nestor_no_such_module_xyz:Encoder",
            "not-a-factory": "module:NOT_AN_ENCODER",
        },
    )
    encoders.clear_cache()
    with pytest.raises(EncoderUnavailable, match="'missing-module' cannot be imported"):
        encoders.load_encoder("missing-module")
    with pytest.raises(EncoderError, match="'not-a-factory'.*is not an encoder factory"):
        encoders.load_encoder("not-a-factory")
    assert encoders.load_encoder("hash") is HashEncoder


def test_registry_import_is_light() -> None:
    # Loading the sentence-transformers class must not import torch: that happens on build only.
    code = (
        "import sys, encoders; encoders.load_encoder('sentence-transformers-tokens'); "
        "encoders.create_encoder('hash').embed_documents(['x']); "
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'heavy import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(encoders.__file__).parent.parent)
