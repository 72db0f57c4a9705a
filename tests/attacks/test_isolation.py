"""Refusing a file imports nothing, writes nothing, allocates little; the validator matters."""

from __future__ import annotations

import json
import textwrap

import milo_pack

from .craft import floats_file, make_model, manifest_edit, model_file, run_python


def _tag(tag):
    def edit(doc):
        doc["root"]["$type"] = tag
    return edit


def _declares_1e12_bytes(doc):
    doc["sections"][0]["length"] = 125_000_000_000
    doc["root"]["a"]["shape"] = [125_000_000_000]


def _corrupt_tree():
    model = make_model("tree")
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    nodes["left_child"][0] = 2**40
    model.tree_.__setstate__({**state, "nodes": nodes})
    return milo_pack.dumps(model)


_CHECK = textwrap.dedent("""
    import json, os, resource, sys
    import milo_pack
    from milo_pack.registry import get_registry
    # Families load lazily by module; load them all so that "no new module" below means "nothing
    # outside the allow-list" (test_attacker_named_modules_are_never_imported covers the lazy
    # registry as it is).
    get_registry().load_all()
    paths = json.loads(sys.argv[1])
    before_modules = set(sys.modules)
    before_files = sorted(os.listdir("."))
    before_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = {}
    for name, path in paths.items():
        try:
            milo_pack.load(path)
            results[name] = "LOADED"
        except milo_pack.MiloError as exc:
            results[name] = type(exc).__name__
    print(json.dumps({
        "results": results,
        "new_modules": sorted(set(sys.modules) - before_modules),
        "files_changed": sorted(os.listdir(".")) != before_files,
        "rss_growth_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_rss,
    }))
""")


def test_refusal_imports_nothing_writes_nothing_and_stays_small(tmp_path):
    pipeline = model_file("pipeline")
    files = {
        "os.system": (manifest_edit(pipeline, _tag("os.system")), "UntrustedTypeError"),
        "antigravity": (manifest_edit(pipeline, _tag("antigravity.fly")), "UntrustedTypeError"),
        "http.server": (manifest_edit(pipeline, _tag("http.server.HTTPServer")),
                        "UntrustedTypeError"),
        "function": (manifest_edit(pipeline, _tag("function:xml.dom.minidom.parseString")),
                     "UntrustedTypeError"),
        "1e12_bytes": (manifest_edit(floats_file(), _declares_1e12_bytes), "LimitError"),
        "corrupt_tree": (_corrupt_tree(), "InvariantError"),
    }
    work = tmp_path / "cwd"
    work.mkdir()
    paths = {}
    for name, (data, _) in files.items():
        paths[name] = str(tmp_path / f"{name}.milo")
        (tmp_path / f"{name}.milo").write_bytes(data)
    result = run_python(_CHECK, json.dumps(paths), cwd=str(work))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["results"] == {name: error for name, (_, error) in files.items()}
    assert report["new_modules"] == []
    assert not report["files_changed"] and list(work.iterdir()) == []
    assert report["rss_growth_kb"] < 100 * 1024


_LAZY_CHECK = textwrap.dedent("""
    import json, sys
    import milo_pack
    paths = json.loads(sys.argv[1])
    for path in paths:
        try:
            milo_pack.load(path)
        except milo_pack.MiloError:
            pass
    named = ["antigravity", "http.server", "xml.dom.minidom", "this", "webbrowser"]
    print(json.dumps(sorted(m for m in named if m in sys.modules)))
""")


def test_attacker_named_modules_are_never_imported(tmp_path):
    pipeline = model_file("pipeline")
    tags = ["antigravity.fly", "http.server.HTTPServer", "function:xml.dom.minidom.parseString",
            "this.s", "type:webbrowser.open"]
    paths = []
    for i, tag in enumerate(tags):
        path = tmp_path / f"{i}.milo"
        path.write_bytes(manifest_edit(pipeline, _tag(tag)))
        paths.append(str(path))
    result = run_python(_LAZY_CHECK, json.dumps(paths), cwd=str(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout) == []


_RAW_SKLEARN = textwrap.dedent("""
    import sys, numpy as np
    from sklearn.tree import DecisionTreeClassifier
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)); y = (X[:, 0] > 0).astype(int)
    tree = DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, y)
    state = tree.tree_.__getstate__()
    nodes = state["nodes"].copy()
    kind = sys.argv[1]
    if kind == "out_of_range":
        nodes["left_child"][0] = 2**40
    else:  # a leaf whose children lead back to the root: an endless walk
        leaf = int(np.flatnonzero(nodes["left_child"] == -1)[0])
        nodes["left_child"][leaf] = 0
        nodes["right_child"][leaf] = 0
        nodes["feature"][leaf] = 0
    tree.tree_.__setstate__({**state, "nodes": nodes})  # scikit-learn accepts it
    tree.predict(X)
    print("PREDICTED")
""")


def test_the_tree_validator_matters(tmp_path):
    """Fed straight to scikit-learn, a corrupted node array crashes or hangs ``predict``;
    the same tree in a file is refused by milo_pack with InvariantError."""
    import subprocess

    crashed = run_python(_RAW_SKLEARN, "out_of_range")
    assert crashed.returncode != 0 and "PREDICTED" not in crashed.stdout
    try:
        hung = run_python(_RAW_SKLEARN, "cycle", timeout=8)
        assert hung.returncode != 0 and "PREDICTED" not in hung.stdout
    except subprocess.TimeoutExpired:
        pass  # an endless loop in native code: also what the validator prevents

    from milo_pack.errors import InvariantError

    from .craft import refused

    refused(_corrupt_tree(), InvariantError)


_TRUSTED = textwrap.dedent("""
    import json, sys
    import milo_pack
    cases = json.loads(sys.argv[1])
    milo_pack.load(cases.pop("<warm-up>"))  # the honest file: its families' modules load
    before = set(sys.modules)
    results = {}
    for tag, path in cases.items():
        try:
            milo_pack.load(path, trusted=[tag])
            results[tag] = "LOADED"
        except milo_pack.MiloError as exc:
            results[tag] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"results": results, "new_modules": sorted(
        m for m in set(sys.modules) - before if not m.startswith(("sklearn", "scipy", "numpy",
                                                                   "milo_pack")))}))
""")


def test_trusted_tags_that_name_no_estimator_import_nothing(tmp_path):
    """A caller passing a tag it copied from a file: the module is not imported unless the tag
    can name what the file's node needs (antigravity would open a browser, ``this`` prints)."""
    nodes = {
        "antigravity.fly": {"params": {}, "attrs": {}},  # not defined by the module
        "antigravity.geohash": {"params": {}, "attrs": {}},  # a function, not a class
        "this.s": {"params": {}, "attrs": {}},  # a string
        "http.server.test": {"params": {}, "attrs": {}},  # a function
        "webbrowser.open": {"x": 1},  # not an estimator node at all
        "function:xml.dom.minidom.Document": {},  # a class, not a function
        "os.system": {"params": {}, "attrs": {}},  # imported already: not a class
    }
    warm = tmp_path / "honest.milo"
    warm.write_bytes(model_file("pipeline"))
    cases = {"<warm-up>": str(warm)}
    for i, (tag, node) in enumerate(nodes.items()):
        def edit(doc, tag=tag, node=node):
            doc["root"] = {"$type": tag, **node}

        path = tmp_path / f"{i}.milo"
        path.write_bytes(manifest_edit(model_file("pipeline"), edit))
        cases[tag] = str(path)
    result = run_python(_TRUSTED, json.dumps(cases))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["new_modules"] == [], report["new_modules"]
    for tag, outcome in report["results"].items():
        assert outcome.startswith("UntrustedTypeError"), (tag, outcome)
        assert "nothing was imported" in outcome, (tag, outcome)
        assert "names no" in outcome or "not an estimator" in outcome \
            or "not a function" in outcome, (tag, outcome)
