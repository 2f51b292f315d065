"""Print the rows of a Parquet file as JSON Lines, converted like ../shared/tools/hudi-read.py.

Usage: parquet_rows.py TOOLS_DIR FILE SORT_COLS
"""
import importlib.util, json, sys

import pyarrow.parquet as pq

spec = importlib.util.spec_from_file_location("hudi_read", f"{sys.argv[1]}/hudi-read.py")
hudi_read = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hudi_read)

tab = pq.read_table(sys.argv[2])
tab = tab.select([c for c in tab.column_names if not c.startswith("_hoodie_")])
rows = [hudi_read.to_jsonable(r) for r in tab.to_pylist()]
keys = sys.argv[3].split(",")
rows.sort(key=lambda r: tuple("" if r.get(k) is None else str(r.get(k)) for k in keys))
for r in rows:
    print(json.dumps(r, ensure_ascii=False))
