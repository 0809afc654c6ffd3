"""Where reading a FHIR bundle spends its time: 200 patients (named, with an address and a
record number) and 10,000 Observations, as the import audit's bundle; prints one JSON
line per repeat: seconds to validate the bundle (fhir.resources), seconds for all of
`read_fhir_bundle` (which validates too), and how many regular expressions it compiled.

    PYTHONPATH=src .venv/bin/python benchmarks/fhir_import.py [N_OBSERVATIONS] [REPEATS]
"""

import json
import re
import sys
import tempfile
import time
from pathlib import Path

from fhir.resources.R4B.bundle import Bundle

from medloop.precision import read_fhir_bundle

n_obs = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 2
codes = [("718-7", "g/dL"), ("2160-0", "mg/dL"), ("8867-4", "/min"), ("2345-7", "mg/dL")]
resources = [
    {
        "resourceType": "Patient",
        "id": f"p{i}",
        "identifier": [{"system": "urn:oid:1.2.276.0.76.4.8", "value": f"KH-{i}"}],
        "name": [{"family": "Müller", "given": [f"G{i}"]}],
        "birthDate": "1947-03-12",
        "address": [{"line": ["Hauptstraße 5"], "city": "München", "postalCode": "80331"}],
    }
    for i in range(200)
]
for k in range(n_obs):
    code, unit = codes[k % 4]
    resources.append(
        {
            "resourceType": "Observation",
            "id": f"o{k}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": code}]},
            "subject": {"reference": f"Patient/p{k % 200}"},
            "effectiveDateTime": f"2024-{1 + k % 12:02d}-{1 + k % 28:02d}T08:00:00Z",
            "valueQuantity": {
                "value": 10 + k % 7,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }
    )
data = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [{"resource": r} for r in resources],
}
path = Path(tempfile.mkdtemp()) / "big.json"
path.write_text(json.dumps(data))

compiled = 0
compile_pattern = re._compiler.compile  # type: ignore[attr-defined]


def counting(*args, **kwargs):
    global compiled
    compiled += 1
    return compile_pattern(*args, **kwargs)


re._compiler.compile = counting  # type: ignore[attr-defined]
for _ in range(repeats):
    t = time.perf_counter()
    Bundle.model_validate(data)
    validate = time.perf_counter() - t
    compiled = 0
    re.purge()  # every repeat compiles afresh, as a new import process does
    t = time.perf_counter()
    records = read_fhir_bundle(path, key=b"benchmark-key", date_key=b"benchmark-date-key")
    total = time.perf_counter() - t
    print(
        json.dumps(
            {
                "observations": len(records.observations),
                "validate_s": round(validate, 2),
                "read_fhir_bundle_s": round(total, 2),
                "regex_compiles": compiled,
            }
        )
    )
