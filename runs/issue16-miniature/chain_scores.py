"""Print the MiniBench numbers of an applied output or cache entry, pass by pass (eighth sitting).
`python runs/issue16-miniature/chain_scores.py FOLDER`."""
import json
import sys


def show(label, v):
    if isinstance(v, dict) and isinstance(v.get("total"), float) and "parts" in v:
        parts = {p: round(x, 3) for p, x in v["parts"].items()}
        print(f"  {label:40s} {v['total']:.3f}", parts)


d = json.load(open(f"{sys.argv[1]}/neocompress.json"))
for r in d["pass_log"]:
    print(r["name"], round(r["seconds"]), "s")
    rep = r["report"]
    for k, v in (rep.get("minibench") or {}).items():
        show(k, v)
        if isinstance(v, dict) and "total" in v and isinstance(v["total"], dict):
            print(f"  {k:40s} {v['total']}")
    for k, v in (rep.get("baselines") or {}).items():
        show("baseline " + k, v.get("minibench") if isinstance(v, dict) else None)
    recovery = rep.get("recovery") if isinstance(rep.get("recovery"), dict) else {}
    scores = recovery.get("minibench") or []
    for entry in scores if isinstance(scores, list) else [{"label": k, **v} for k, v in scores.items()]:
        label = entry.get("label") or entry.get("after") or entry.get("name") or "?"
        show("recovery " + str(label), entry.get("minibench", entry))
