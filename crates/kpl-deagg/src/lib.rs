//! KPL deaggregation (work in progress by the kpl-deagg helper).
