"""Where the workflow writes its score files, and which runs it plans: one place for both.

The rules (``workflow/rules/*.smk``) take their output patterns from the templates below, the target lists
of ``common.smk`` fill them with :func:`path`, and the tables read the run keys back with :func:`parse`, so
a path is spelt once. The planning functions decide which JANUS models and cross-dataset scorings a
configuration asks for; ``common.smk`` calls them with its config and the tables agree with them.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable

from nidsflow.janus.variants import DEFAULT_VARIANT_OVERRIDES, FIX_ABLATIONS, is_packet_free

#: JANUS scores of a model on its own dataset's split (rule score_phase1).
PHASE1_SCORES = "results/{study}/{ds}/janus/{variant}/seed{seed}/phase1_scores.npz"
#: A model trained on ``src`` scoring ``tgt``'s split (rule score_cross).
CROSS_SCORES = "results/{study}/cross/{src}__{tgt}/{variant}/seed{seed}/cross_scores.npz"
#: A baseline's scores on a dataset's split (rule baseline).
BASELINE_SCORES = "results/{study}/{ds}/baselines/{method}/seed{seed}/scores.npz"

#: The variant whose cross scores make the cross matrix and the group-A cross columns (sigma = janus.cross_sigma).
CROSS_VARIANT = "cross"
#: JANUS variants that read no packet sequences (B2: flow features only), so they run on flow-table stores.
PACKET_FREE_VARIANTS = frozenset(v for v in DEFAULT_VARIANT_OVERRIDES if is_packet_free({}, v))
#: Keys that are whole numbers in a path.
_INT_KEYS = {"seed"}


#: A name from the config that becomes a folder or file name (a dataset, a HIKARI table, a new capture):
#: letters, digits, ``_``, ``-``, ``.``, starting with a letter or digit (so never ``..``, ``/`` or hidden).
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def safe_name(name, key: str) -> str:
    """``name`` if it is path-safe (:data:`SAFE_NAME`), else a ValueError naming the config key: a name like
    ``../x`` would write outside ``results/{study}``. The one check wherever a config name becomes a folder."""
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise ValueError(f"{key}: name {name!r} cannot be a folder name (use letters, digits, '_', '-', '.'; "
                         "starting with a letter or digit)")
    return name


def path(template: str, **keys) -> str:
    """The file of one run: every field of the template filled (a missing key is a KeyError naming it; a name
    that is not path-safe, :func:`safe_name`, a ValueError)."""
    for k, v in keys.items():
        if isinstance(v, str):
            safe_name(v, k)
    return template.format(**keys)


def _regex(template: str) -> re.Pattern:
    out, seen = [], set()
    for literal, name, _, _ in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if name:
            if name in seen:
                out.append(f"(?P={name})")
            else:
                seen.add(name)
                out.append(rf"(?P<{name}>\d+)" if name in _INT_KEYS else rf"(?P<{name}>[^/]+?)")
    return re.compile("".join(out) + "$")


def parse(template: str, file: str) -> dict:
    """The keys of a file written from ``template`` (``seed`` as an int); ValueError when it does not fit.

    The template is matched against the end of the path, so a file under another folder parses the same.
    """
    p = str(file).replace("\\", "/")
    m = _regex(template).search(p)
    if m is None:
        raise ValueError(f"{file}: is not a path of the form {template}")
    return {k: int(v) if k in _INT_KEYS else v for k, v in m.groupdict().items()}


# ---------------------------------------------------------------- which runs a configuration asks for

def main_variant(has_packets: bool) -> str:
    """JANUS's main variant of a dataset: the full model, or B2 (flow features only) on a flow-table store."""
    return "full" if has_packets else "B2"


def janus_runs(datasets: Iterable[str], has_packets: Callable[[str], bool], seeds: Iterable[int],
               variants: Iterable[str], ablation_datasets: Iterable[str],
               ablation_seeds: Iterable[int]) -> list[tuple[str, str, int]]:
    """(ds, variant, seed) of every JANUS model scored within its dataset, sorted.

    Every dataset's main variant at every seed; on the ablation datasets, each other variant that the store
    can feed (packet-free ones only on flow tables) at the ablation seeds. A fix ablation
    (:data:`~nidsflow.janus.variants.FIX_ABLATIONS`) runs only where the variant it is compared with runs.
    """
    runs, ablation, variants = set(), set(ablation_datasets), list(variants)
    for ds in datasets:
        main = main_variant(has_packets(ds))
        runs.update((ds, main, int(s)) for s in seeds)
        if ds in ablation:
            for v in variants:
                if v in FIX_ABLATIONS and FIX_ABLATIONS[v] not in (main, *variants):
                    continue
                if v != main and (has_packets(ds) or v in PACKET_FREE_VARIANTS):
                    runs.update((ds, v, int(s)) for s in ablation_seeds)
    return sorted(runs)


def cross_pairs(packet_datasets: Iterable[str], enabled: bool = True) -> list[tuple[str, str]]:
    """Ordered (source, target) pairs of distinct packet datasets; none when cross scoring is off."""
    ds = list(packet_datasets)
    return [(a, b) for a in ds for b in ds if a != b] if enabled else []


def cross_runs(pairs: Iterable[tuple[str, str]], seeds: Iterable[int], trained: Iterable[tuple[str, str, int]],
               variants: Iterable[str], ablation_datasets: Iterable[str],
               ablation_seeds: Iterable[int]) -> list[tuple[str, str, str, int]]:
    """(src, tgt, variant, seed) of every cross-dataset scoring, in plan order without repeats.

    The cross matrix: every pair with the source's :data:`CROSS_VARIANT` model, every seed. The group-B
    cross columns: on a source among the ablation datasets, each variant trained there (``trained``, from
    :func:`janus_runs`; the full model always, as the reference the variants are compared with) scores every
    other packet dataset, at each ablation seed.
    """
    pairs, trained, ablation = list(pairs), set(trained), set(ablation_datasets)
    runs = [(a, b, CROSS_VARIANT, int(s)) for a, b in pairs for s in seeds]
    for a, b in pairs:
        if a in ablation:
            for v in dict.fromkeys(["full", *variants]):
                runs += [(a, b, v, int(s)) for s in ablation_seeds if (a, v, int(s)) in trained]
    return list(dict.fromkeys(runs))
