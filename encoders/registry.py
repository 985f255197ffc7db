"""Find encoders by name through the entry-point group `nestor.encoders`.

Built-ins register through the same group in Nestor's own `pyproject.toml`, so a third-party
package adds an encoder with one line in its metadata and no change here:

    [project.entry-points."nestor.encoders"]
    my-encoder = "my_package.module:MyEncoder"

Discovery is lazy (first use) and cached; an entry point is imported only when its name is asked
for, so a broken or heavy plugin costs nothing until used. Two distributions claiming one name is
an error rather than a silent pick, since which one wins would depend on `sys.path` order.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from pydantic import BaseModel, ValidationError

from encoders.base import (
    DuplicateEncoder,
    Encoder,
    EncoderConfig,
    EncoderConfigError,
    EncoderError,
    EncoderFactory,
    EncoderNotFound,
    EncoderSpec,
    EncoderUnavailable,
)

__all__ = [
    "GROUP",
    "EncoderRegistry",
    "available_encoders",
    "clear_cache",
    "create_encoder",
    "default_registry",
    "get_encoder",
    "load_encoder",
    "normalize_spec",
]

GROUP = "nestor.encoders"


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    return f"{ep.value} (from {dist.name if dist is not None else 'an unknown distribution'})"


class EncoderRegistry:
    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        # RLock: get() holds it while calling create(), which takes it again.
        self._lock = threading.RLock()
        self._entry_points: dict[str, EntryPoint] | None = None
        self._factories: dict[str, EncoderFactory] = {}
        self._instances: dict[tuple[str, str], Encoder] = {}

    def clear_cache(self) -> None:
        """Forget discovered entry points, loaded classes and shared instances (for tests and
        after installing a plugin into a running process)."""
        with self._lock:
            self._entry_points = None
            self._factories.clear()
            self._instances.clear()

    def names(self) -> list[str]:
        return sorted(self._discover())

    def load(self, name: str) -> EncoderFactory:
        """The factory (normally the class) registered under `name`, imported on first use."""
        with self._lock:
            factory = self._factories.get(name)
            if factory is not None:
                return factory
            eps = self._discover()
            ep = eps.get(name)
            if ep is None:
                raise EncoderNotFound(name, list(eps))
            try:
                obj = ep.load()
            except ImportError as e:
                raise EncoderUnavailable(f"encoder {name!r} cannot be imported ({_origin(ep)}): {e}") from e
            except Exception as e:
                raise EncoderError(f"encoder {name!r} failed to load ({_origin(ep)}): {e!r}") from e
            model = getattr(obj, "config_model", None)
            if not (callable(obj) and isinstance(model, type) and issubclass(model, BaseModel)):
                raise EncoderError(
                    f"entry point {name!r} = {_origin(ep)} is not an encoder factory "
                    "(needs a `config_model` pydantic class and to be callable with a config)"
                )
            factory = cast(EncoderFactory, obj)
            self._factories[name] = factory
            return factory

    def normalize(self, spec: EncoderSpec) -> EncoderSpec:
        """Validate `spec.config` and fill in defaults without building the encoder (no model load).

        Two specs describe the same encoder exactly when their normalized forms are equal."""
        config = self._validate(spec, self.load(spec.name))
        return EncoderSpec(name=spec.name, config=config.model_dump(mode="json"))

    def create(self, spec: EncoderSpec) -> Encoder:
        """A new encoder instance for `spec`."""
        factory = self.load(spec.name)
        config = self._validate(spec, factory)
        return self._build(spec.name, factory, config)

    def get(self, spec: EncoderSpec) -> Encoder:
        """A shared instance per normalized spec, so collections with one model load it once."""
        factory = self.load(spec.name)
        config = self._validate(spec, factory)
        key = (spec.name, config.model_dump_json())
        with self._lock:
            encoder = self._instances.get(key)
            if encoder is None:
                encoder = self._instances[key] = self._build(spec.name, factory, config)
            return encoder

    def _discover(self) -> dict[str, EntryPoint]:
        with self._lock:
            if self._entry_points is None:
                found: dict[str, EntryPoint] = {}
                for ep in entry_points(group=self.group):
                    if ep.name in found:
                        # Sorted, because which one is met first depends on directory order.
                        first, second = sorted((_origin(found[ep.name]), _origin(ep)))
                        raise DuplicateEncoder(
                            f"encoder name {ep.name!r} is registered twice in group {self.group!r}: "
                            f"{first} and {second}; uninstall one of them"
                        )
                    found[ep.name] = ep
                self._entry_points = found
            return self._entry_points

    @staticmethod
    def _validate(spec: EncoderSpec, factory: EncoderFactory) -> EncoderConfig:
        try:
            return factory.config_model.model_validate(spec.config)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<config>'}: {err['msg']}" for err in e.errors()
            )
            raise EncoderConfigError(f"invalid config for encoder {spec.name!r}: {problems}") from e

    @staticmethod
    def _build(name: str, factory: EncoderFactory, config: EncoderConfig) -> Encoder:
        try:
            return factory(config)
        except EncoderError:
            raise
        except ValueError as e:
            raise EncoderConfigError(f"encoder {name!r} rejected its config: {e}") from e


default_registry = EncoderRegistry()


def _as_spec(spec: EncoderSpec | str, config: Mapping[str, Any] | None) -> EncoderSpec:
    if isinstance(spec, EncoderSpec):
        if config is not None:
            raise TypeError("pass either an EncoderSpec or a name with a config, not both")
        return spec
    return EncoderSpec(name=spec, config=dict(config or {}))


def available_encoders() -> list[str]:
    return default_registry.names()


def load_encoder(name: str) -> EncoderFactory:
    return default_registry.load(name)


def normalize_spec(spec: EncoderSpec | str, config: Mapping[str, Any] | None = None) -> EncoderSpec:
    return default_registry.normalize(_as_spec(spec, config))


def create_encoder(spec: EncoderSpec | str, config: Mapping[str, Any] | None = None) -> Encoder:
    return default_registry.create(_as_spec(spec, config))


def get_encoder(spec: EncoderSpec | str, config: Mapping[str, Any] | None = None) -> Encoder:
    return default_registry.get(_as_spec(spec, config))


def clear_cache() -> None:
    default_registry.clear_cache()
