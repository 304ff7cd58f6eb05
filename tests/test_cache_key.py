"""A generated module's name hashes the source of the helper modules it imports, found
through the import system: a changed helper renames exactly the modules that use it."""
from jitgrad.backends import cache


def test_a_module_name_hashes_the_helpers_it_imports(monkeypatch):
    uses, plain = "from jitgrad.backends.scalars import (\n    sigmoid)\n", "x = 1\n"
    before = cache.module_name(uses), cache.module_name(plain)
    cache.module_name.cache_clear()
    monkeypatch.setattr(cache, "_helper_digest", lambda module: f"{module} changed")
    try:
        assert cache.module_name(uses) != before[0] and cache.module_name(plain) == before[1]
    finally:
        cache.module_name.cache_clear()


def test_the_helpers_of_a_program_are_its_backend_imports_but_the_cache():
    source = ("from jitgrad.backends.numba_cache import jit\nfrom jitgrad.backends.scalars import (\n"
              "    sign)\nfrom jitgrad.backends import lapack\nfrom jitgrad.distributed import x\n")
    assert cache._helpers_key(source) == cache._helper_digest("lapack") + cache._helper_digest("scalars")
