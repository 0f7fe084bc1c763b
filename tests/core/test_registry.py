"""Every built-in pass registers cleanly and documents itself; lookups fail helpfully."""

from __future__ import annotations

import pytest

from neocompress.core.pass_base import Pass, PassConfig
from neocompress.core.registry import UnknownPassError, get_pass, known_pass_names, register_pass
from neocompress.passes import BUILTIN_PASSES


@pytest.mark.parametrize("name", sorted(BUILTIN_PASSES))
def test_builtin_pass_is_registered_and_documented(name):
    cls = get_pass(name)
    assert cls.name == name and isinstance(cls.version, int) and cls.summary
    assert cls.__doc__ or __import__(cls.__module__).__doc__
    assert issubclass(cls.Config, PassConfig)
    assert cls.Config.model_config["extra"] == "forbid" and cls.Config.model_config["frozen"]
    for field in cls.Config.model_fields.values():
        assert field.description, f"{name}: every config key needs a description for `passes show`"


def test_unknown_pass_names_the_nearest_and_all_known():
    with pytest.raises(UnknownPassError) as e:
        get_pass("remove_block")
    assert e.value.suggestion == "remove_blocks"
    assert all(n in str(e.value) for n in known_pass_names())


def test_registration_rejects_bad_names_and_duplicates():
    class Cfg(PassConfig):
        pass

    def make(name: str) -> type[Pass]:
        return type("P", (Pass,), {"name": name, "Config": Cfg, "run": lambda self, ir, ctx: None})

    with pytest.raises(ValueError, match="snake_case"):
        register_pass(make("BadName"))
    get_pass("remove_blocks")  # imports the built-in module, which registers it
    with pytest.raises(ValueError, match="already registered"):
        register_pass(make("remove_blocks"))
