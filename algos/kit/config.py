"""Agent configs: the dataclass every algorithm's hyperparameters live in, and how values become one.

Values come from the algorithm's defaults, its presets, a profile, ``--set key=value`` or a suite's
``overrides:`` (``algos.kit.registry.resolve_config``); ``AgentConfig.from_dict`` refuses unknown and renamed
keys, coerces strings to the declared types, checks each number's range (``check_range``) and then the
config's own cross-field rule (``AgentConfig.validate``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, Callable


class ConfigError(ValueError):
    """A configuration key or value that the agent does not accept."""


@dataclass
class AgentConfig:
    """Base of every agent config: a dataclass whose fields are the algorithm's hyperparameters.

    ``reward_transform`` names how the harness turns the dataset's rewards into the rewards this
    algorithm trains on (``harness.data.REWARD_TRANSFORMS``: none, minus_one, iql_locomotion,
    cql_antmaze, ...). It is part of the algorithm's config, set per benchmark by its presets, because
    each published number came with its own convention (IQL/FQL: antmaze r − 1; Diffusion-QL: (r − 0.5)·4).
    """

    reward_transform: str = "none"

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AgentConfig":
        """Builds a config, rejecting keys the algorithm does not have and coercing types."""
        unknown = sorted(set(values) - set(cls.field_names()))
        for key in unknown:
            renamed = renamed_key_message(cls, key)
            if renamed:
                raise ConfigError(renamed)
        if unknown:
            raise ConfigError(
                f"unknown config key(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid keys: {', '.join(cls.field_names())}"
            )
        hints = typing.get_type_hints(cls)
        config = cls(**{k: coerce(k, v, hints[k]) for k, v in values.items()})
        for f in fields(config):
            check_range(f.name, getattr(config, f.name))
        config.validate()
        return config

    def validate(self) -> None:
        """Checks between fields (each field's own range is checked by ``check_range``): raise ``ConfigError``
        naming the fields and what they must satisfy. Every config built from values passes through here, so
        a suite's ``--dry-run`` catches what the agent could not run."""

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> "AgentConfig":
        return type(self).from_dict({**self.to_dict(), **changes})


# One name per concept across every agent, so that ``--set key=value`` means the same
# everywhere. Keys that agents used to have, mapped to the keys that replaced them; a config refuses an
# old key with a message naming the replacements it has (``renamed_key_message``), whether the key came
# from ``--set``, a suite's ``overrides:`` or a preset.
RENAMED_KEYS: dict[str, tuple[str, ...]] = {
    "flow_steps": ("sampling_steps",),  # K, the sampler's steps (Euler, DDPM or consistency)
    "diffusion_steps": ("sampling_steps",),
    "hidden_dims": ("actor_hidden_dims", "value_hidden_dims"),  # policy-side | critic and value networks
    "layer_norm": ("critic_layer_norm",),
    "temperature": ("awr_temperature", "energy_scale"),  # AWR β (IQL, FAWAC) | β of exp(β Q) (QIPO)
    "lr": ("actor_lr", "critic_lr", "value_lr"),
    "lr_schedule": ("actor_lr_schedule", "critic_lr_schedule"),
    "num_samples": ("num_candidates",),  # candidates drawn when acting
}
# Where an agent's old key meant another concept than the table says, by config class: Flow BC's one
# ``layer_norm`` was its flow's (a policy network; it has no critic).
RENAMED_KEYS_BY_CONFIG: dict[str, dict[str, tuple[str, ...]]] = {
    "FlowBCConfig": {"layer_norm": ("actor_layer_norm",)},
}


def renamed_key_message(config_class: type[AgentConfig], key: str) -> str | None:
    """Why ``key`` is refused if it is an old name of a key ``config_class`` has: "config key 'flow_steps'
    was renamed to 'sampling_steps'". None for a key that was never renamed, or whose replacements this
    config lacks (an agent that never had it: the plain unknown-key message)."""
    table = {**RENAMED_KEYS, **RENAMED_KEYS_BY_CONFIG.get(config_class.__name__, {})}
    replacements = [k for k in table.get(key, ()) if k in config_class.field_names()]
    if not replacements:
        return None
    if len(replacements) == 1:
        return f"config key {key!r} was renamed to {replacements[0]!r}"
    names = ", ".join(repr(k) for k in replacements[:-1]) + f" and {replacements[-1]!r}"
    return f"config key {key!r} was renamed to {names} (one per kind of network)"


# Allowed ranges of numeric config fields, by field name; any other number must be finite and >= 0 (no
# hyperparameter of these algorithms is negative). Fields ending in ``_lr`` or ``_hidden_dims`` or
# starting with ``num_`` must be > 0.
POSITIVE_FIELDS = {"batch_size", "sampling_steps", "time_dim", "components", "actor_freq", "ema_every", "renew_every",
                   "grad_norm", "max_weight", "actor_final_init_scale", "noise_levels", "eps", "max_noise", "rho"}
INTERVAL_FIELDS: dict[str, tuple[Callable[[float], bool], str]] = {
    "discount": (lambda v: 0 < v <= 1, "(0, 1]"), "tau": (lambda v: 0 < v <= 1, "(0, 1]"),
    "expectile": (lambda v: 0 < v < 1, "(0, 1)"), "ema_decay": (lambda v: 0 <= v <= 1, "[0, 1]"),
    "pretrain_fraction": (lambda v: 0 <= v <= 1, "[0, 1]"), "actor_dropout": (lambda v: 0 <= v < 1, "[0, 1)")}


def check_range(key: str, value: Any) -> None:
    """Rejects a value no run could use (a negative batch size, an infinite learning rate, a discount of 2)."""
    if isinstance(value, tuple):
        for item in value:
            check_range(key, item)
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        raise ConfigError(f"config key {key!r} must be finite, got {value!r}")
    if key in INTERVAL_FIELDS:
        inside, text = INTERVAL_FIELDS[key]
        if not inside(value):
            raise ConfigError(f"config key {key!r} must be in {text}, got {value!r}")
    elif key in POSITIVE_FIELDS or key.endswith(("_lr", "_hidden_dims")) or key.startswith("num_"):
        if value <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value!r}")
    elif value < 0:
        raise ConfigError(f"config key {key!r} must be >= 0, got {value!r}")


def coerce(key: str, value: Any, hint: Any) -> Any:
    """Turns a value (possibly a string from ``--set key=value``) into the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"config key {key!r} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        non_none = [a for a in args if a is not type(None)]
        return coerce(key, value, non_none[0])
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.replace("(", "").replace(")", "").split(",") if v.strip()]
        return tuple(coerce(key, v, args[0]) for v in value)
    try:
        if hint is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            if value not in (True, False):  # 0 and 1 too; 2 or 'x' are no booleans
                raise ValueError(value)
            return bool(value)
        if hint is int:
            number = float(value) if isinstance(value, str) else value
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not float(number).is_integer():
                raise ValueError(value)
            return int(number)
        if hint is float:
            return float(value)
        if hint is str:
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"config key {key!r} expects {getattr(hint, '__name__', hint)}, got {value!r}") from None
    return value
