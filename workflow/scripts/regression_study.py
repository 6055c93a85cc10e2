import json

from robustlm.logs import to_file
from robustlm.provenance import job_provenance
from robustlm.regression import plot, simulate
from robustlm.tables import provenance_note

with to_file(snakemake.log[0]):
    settings = json.loads(snakemake.params.spec)
    estimates, table = simulate(settings)
    table["provenance"] = provenance_note([("regression_study", job_provenance(settings, "cpu"))])
    estimates.to_csv(snakemake.output.estimates, index=False)
    table.to_csv(snakemake.output.table, index=False)
    plot(estimates, settings["theta"], snakemake.output.figure)
    print(table.to_string(index=False))
