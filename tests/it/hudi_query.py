"""Time-travel and incremental reads with hudi-rs, printed like ../shared/tools/hudi-read.py.

hudi 0.5.0 ignores read options given to the table builder (which is what hudi-read.py --as-of and
--query incremental do), so this passes them per read with HudiReadOptions.
Usage: hudi_query.py TOOLS_DIR TABLE_URI as_of INSTANT SORT_COLS
       hudi_query.py TOOLS_DIR TABLE_URI incremental BEGIN END SORT_COLS   (END may be "")
"""
import importlib.util, json, sys

import pyarrow as pa
from hudi import HudiQueryType, HudiReadOptions, HudiTableBuilder

spec = importlib.util.spec_from_file_location("hudi_read", f"{sys.argv[1]}/hudi-read.py")
hudi_read = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hudi_read)

table = HudiTableBuilder.from_base_uri(sys.argv[2]).build()
mode = sys.argv[3]
if mode == "as_of":
    opts, sort = HudiReadOptions().with_as_of_timestamp(sys.argv[4]), sys.argv[5]
else:
    opts = HudiReadOptions().with_query_type(HudiQueryType.Incremental).with_start_timestamp(sys.argv[4])
    if sys.argv[5]:
        opts = opts.with_end_timestamp(sys.argv[5])
    sort = sys.argv[6]
batches = table.read(opts)
tab = pa.Table.from_batches(batches, schema=table.get_schema_with_meta_fields() if not batches else batches[0].schema)
tab = tab.select([c for c in tab.column_names if not c.startswith("_hoodie_")])
rows = [hudi_read.to_jsonable(r) for r in tab.to_pylist()]
keys = sort.split(",")
rows.sort(key=lambda r: tuple("" if r.get(k) is None else str(r.get(k)) for k in keys))
for r in rows:
    print(json.dumps(r, ensure_ascii=False))
