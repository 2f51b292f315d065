"""Time travel with hudi-rs: the table as of an instant, printed like ../shared/tools/hudi-read.py.

hudi 0.5.0 ignores `hoodie.read.as.of.timestamp` given to the table builder (which is what
hudi-read.py --as-of does), so this passes it per read with HudiReadOptions.with_as_of_timestamp.
Usage: hudi_as_of.py TOOLS_DIR TABLE_URI AS_OF SORT_COLS
"""
import importlib.util, json, sys

import pyarrow as pa
from hudi import HudiReadOptions, HudiTableBuilder

spec = importlib.util.spec_from_file_location("hudi_read", f"{sys.argv[1]}/hudi-read.py")
hudi_read = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hudi_read)

table = HudiTableBuilder.from_base_uri(sys.argv[2]).build()
batches = table.read(HudiReadOptions().with_as_of_timestamp(sys.argv[3]))
tab = pa.Table.from_batches(batches, schema=table.get_schema_with_meta_fields() if not batches else batches[0].schema)
tab = tab.select([c for c in tab.column_names if not c.startswith("_hoodie_")])
rows = [hudi_read.to_jsonable(r) for r in tab.to_pylist()]
keys = sys.argv[4].split(",")
rows.sort(key=lambda r: tuple("" if r.get(k) is None else str(r.get(k)) for k in keys))
for r in rows:
    print(json.dumps(r, ensure_ascii=False))
