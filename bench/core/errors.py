"""User-facing errors. Each message names the problem and the fix; the CLI prints it without a traceback."""


class ClaimbenchError(Exception):
    """Base class for errors caused by input (config, data, names), not by bugs."""


class UnknownName(ClaimbenchError):
    """An unknown method, claim, dataset or profile; the message lists the known ones."""


class ConfigError(ClaimbenchError):
    """A bad configuration key or value; the message names it and the allowed ones."""


class DatasetNotFound(ClaimbenchError):
    """No copy of a dataset on the search path and no way to download it."""


class ChecksumMismatch(ClaimbenchError):
    """A dataset file whose sha256 is not the registered one (corrupt or a different file)."""


class DiskFull(ClaimbenchError):
    """No space left (or over quota) while writing a result; the file's previous version is kept."""


def unknown(kind: str, name: str, known: "list[str] | set[str]") -> UnknownName:
    """Build the standard 'unknown X' error listing the known names."""
    return UnknownName(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")


def check_keys(where: str, given: "dict | set", allowed: "set[str] | dict") -> None:
    """Raise ConfigError for the first key of `given` not in `allowed`."""
    bad = sorted(set(given) - set(allowed))
    if bad:
        raise ConfigError(
            f"unknown key {bad[0]!r} in {where}; allowed keys: {', '.join(sorted(allowed))}"
        )


def refuse_weight_cost(method: str, l2: float, prior: str) -> None:
    """Raise ConfigError when a Bayesian method whose weight `prior` (its text, e.g. "N(0, 1)") is
    the weight cost is given a model with a non-zero l2 weight cost `l2`, which would count twice."""
    if l2:
        raise ConfigError(f"{method}: the prior {prior} replaces the model's l2 weight cost, which would count "
                          f"it twice; set the model's l2 to 0 (got l2 = {l2})")
