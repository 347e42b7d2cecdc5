"""From records to reports: grids, statistics, tables, their rendering, the verdict and figures."""
