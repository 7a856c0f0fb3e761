#!/usr/bin/env python3
"""Derive the enum of OCSF `observable.type_id` from an ocsf-schema checkout.

The OCSF schema server builds this enum at run time from every `observable`
number declared on data types, dictionary attributes, objects and object
attributes; the resolved files in upstream/ do not carry it. Extensions
(extensions/*) are left out: flowscribe emits core OCSF only.

Usage: derive_observable_type_ids.py <ocsf-schema checkout at tag 1.8.0> > ../upstream/observable_type_ids.json
"""
import glob
import json
import os
import sys

root = sys.argv[1]
ids = {"0": "Unknown", "99": "Other"}


def add(number, source):
    key = str(number)
    if key in ids and ids[key] != source:
        sys.exit(f"observable {number} declared twice: {ids[key]} and {source}")
    ids[key] = source


with open(os.path.join(root, "dictionary.json")) as f:
    dictionary = json.load(f)
for name, t in dictionary["types"]["attributes"].items():
    if "observable" in t:
        add(t["observable"], f"type {name}")
for name, a in dictionary["attributes"].items():
    if "observable" in a:
        add(a["observable"], f"attribute {name}")
for path in sorted(glob.glob(os.path.join(root, "objects", "*.json"))):
    with open(path) as f:
        obj = json.load(f)
    if "observable" in obj:
        add(obj["observable"], f"object {obj['name']}")
    for name, a in obj.get("attributes", {}).items():
        if isinstance(a, dict) and "observable" in a:
            add(a["observable"], f"object attribute {obj['name']}.{name}")

ordered = dict(sorted(ids.items(), key=lambda kv: int(kv[0])))
json.dump({"type_id": ordered}, sys.stdout, indent=2)
sys.stdout.write("\n")
