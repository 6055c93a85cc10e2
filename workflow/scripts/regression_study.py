import json

from robustlm.logs import to_file
from robustlm.regression import plot, simulate

with to_file(snakemake.log[0]):
    settings = json.loads(snakemake.params.spec)
    estimates, table = simulate(settings)
    estimates.to_csv(snakemake.output.estimates, index=False)
    table.to_csv(snakemake.output.table, index=False)
    plot(estimates, settings["theta"], snakemake.output.figure)
    print(table.to_string(index=False))
