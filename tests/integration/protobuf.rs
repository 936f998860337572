//! The protobuf decoder against real Go-encoded bodies: node_exporter serves
//! its scrape as delimited `MetricFamily` messages when asked, and the
//! families must equal those of its text scrape.

use std::fs;

use promdrop::exposition::Family;

use crate::node_exporter::NodeExporter;

#[test]
fn node_exporters_protobuf_scrape_decodes_to_its_text_scrape() {
    let d = tempfile::tempdir().unwrap();
    fs::write(
        d.path().join("a.prom"),
        "# HELP jobs_total Jobs.\n# TYPE jobs_total counter\njobs_total{kind=\"a\\\"q\"} 3\n\
         # TYPE lat_seconds histogram\nlat_seconds_bucket{le=\"0.1\"} 1\nlat_seconds_bucket{le=\"+Inf\"} 3\nlat_seconds_sum 0.7\nlat_seconds_count 3\n\
         # HELP size_bytes Sizes.\n# TYPE size_bytes summary\nsize_bytes{quantile=\"0.5\"} 10\nsize_bytes_sum 30\nsize_bytes_count 2\n\
         plain{x=\"y\"} NaN\n# TYPE g gauge\ng 1e-300\n",
    )
    .unwrap();
    let Some(exporter) = NodeExporter::start(d.path()) else {
        return;
    };
    let text = exporter.scrape();
    let proto = exporter.scrape_protobuf();
    let stable = |families: Vec<Family>| -> Vec<Family> {
        let names = [
            "jobs_total",
            "lat_seconds",
            "size_bytes",
            "plain",
            "g",
            "node_textfile_scrape_error",
        ];
        families
            .into_iter()
            .filter(|f| names.contains(&f.name()))
            .collect()
    };
    let from_text = stable(text.families());
    let from_proto =
        stable(promdrop::protobuf::decode(&proto).expect("the protobuf scrape decodes"));
    assert_eq!(from_text.len(), 6);
    assert_eq!(from_proto, from_text);
}
