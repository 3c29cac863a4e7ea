//! SVG line charts of the report (published-port metrics against the
//! number of ports, one line per mode).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::report::{fmt_num, get, paths, Agg, Key};
use super::topo::Mode;

/// A line chart (log x axis = published ports) with one line per mode.
pub(super) fn plot(agg: &BTreeMap<Key, Agg>, metric: &str, title: &str) -> String {
    let (w, h) = (640.0, 400.0);
    let (l, r, t, b) = (70.0, 130.0, 40.0, 50.0);
    let ps = paths(agg, metric);
    let xs: Vec<f64> = ps.iter().filter_map(|p| p.parse::<f64>().ok()).collect();
    let mut ymax: f64 = 0.0;
    for k in agg.keys().filter(|k| k.0 == metric) {
        ymax = ymax.max(agg[k].max);
    }
    let ymax = if ymax > 0.0 { ymax * 1.1 } else { 1.0 };
    let lx = |x: f64| x.max(1.0).log10();
    let (x0, x1) = (
        xs.iter().copied().map(lx).fold(f64::INFINITY, f64::min),
        xs.iter().copied().map(lx).fold(f64::NEG_INFINITY, f64::max),
    );
    let span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let px = |x: f64| l + (lx(x) - x0) / span * (w - l - r);
    let py = |y: f64| h - b - y / ymax * (h - t - b);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{l}\" y=\"22\" font-size=\"15\">{title}</text>\n"
    );
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/><line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>",
        h - b,
        w - r,
        h - b,
        h - b
    );
    for i in 0..=4 {
        let y = ymax * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{l}\" y1=\"{0:.1}\" x2=\"{1}\" y2=\"{0:.1}\" stroke=\"#ddd\"/><text x=\"{2}\" y=\"{3:.1}\" text-anchor=\"end\">{4}</text>",
            py(y),
            w - r,
            l - 5.0,
            py(y) + 4.0,
            fmt_num(y)
        );
    }
    for x in &xs {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>",
            px(*x),
            h - b + 18.0
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">published ports (log scale)</text>",
        l + (w - l - r) / 2.0,
        h - 8.0
    );
    let colors = ["#2ca02c", "#d62728", "#1f77b4"];
    for (i, m) in Mode::ALL.iter().enumerate() {
        let pts: Vec<(f64, f64)> = ps
            .iter()
            .filter_map(|p| {
                let x = p.parse::<f64>().ok()?;
                get(agg, metric, p, *m).map(|a| (px(x), py(a.median)))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let poly: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
            colors[i],
            poly.join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(
                s,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{}\"/>",
                colors[i]
            );
        }
        let ly = t + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{0}\" y1=\"{ly}\" x2=\"{1}\" y2=\"{ly}\" stroke=\"{2}\" stroke-width=\"2\"/><text x=\"{3}\" y=\"{4}\">{5}</text>",
            w - r + 10.0,
            w - r + 30.0,
            colors[i],
            w - r + 35.0,
            ly + 4.0,
            m.name()
        );
    }
    s.push_str("</svg>\n");
    s
}
