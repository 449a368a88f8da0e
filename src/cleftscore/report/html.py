"""The self-contained ``report.html`` of a run: every photo's pictures and numbers in one file.

Pictures are embedded as data URIs, so the page loads nothing from the network; cells are
escaped. The pictures themselves come from :mod:`cleftscore.report.pictures`.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cleftscore.io import to_jsonable
from cleftscore.report.pictures import DISCLAIMER

logger = logging.getLogger(__name__)

__all__ = [
    "write_html_report",
]


def _data_uri(path: str | os.PathLike, max_px: int) -> str | None:
    from PIL import Image

    if Path(path).suffix.lower() in (".jpg", ".jpeg"):
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            logger.warning("could not embed %s in the report: %s", path, exc)
            return None
        return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.height > max_px:
                w = max(1, round(im.width * max_px / im.height))
                im = im.resize((w, max_px), Image.Resampling.LANCZOS, reducing_gap=3.0)
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=6)
    except (OSError, ValueError) as exc:
        logger.warning("could not embed %s in the report: %s", path, exc)
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(value: Any) -> tuple[str, str]:
    """(display text, sort key) of a cell."""
    v = to_jsonable(value)
    if v is None:
        return "", ""
    if isinstance(v, float):
        return f"{v:.4g}", repr(v)
    if isinstance(v, (list, dict)):
        s = json.dumps(v, ensure_ascii=False)
        return s, s
    return str(v), str(v)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;
  margin:1.5em;color:#222}
.disclaimer{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;margin:1em 0}
table{border-collapse:collapse;margin-top:1em}
th,td{border:1px solid #ccc;padding:.3em .6em;vertical-align:top;text-align:left}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th.asc::after{content:" \\25B2"} th.desc::after{content:" \\25BC"}
tr.failed td{background:#fdecea}
td.img img{max-height:384px;max-width:60vw;border:0}
.wide{max-width:100%;overflow-x:auto}
td.reading{font-weight:bold}
dl.settings{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}
dl.settings dt{font-weight:bold}
"""

_JS = """
(function(){
  var table=document.getElementById('results');
  if(!table){return;}
  var heads=table.tHead.rows[0].cells;
  function key(td){
    var k=td.getAttribute('data-sort'); if(k===null){k=td.textContent;}
    var n=parseFloat(k);
    if(k!=='' && !isNaN(n) && isFinite(k)){return [0,n];}
    return [k===''?2:1,k.toLowerCase()];
  }
  function cmp(a,b){
    if(a[0]!==b[0]){return a[0]-b[0];}
    return a[1]<b[1]?-1:(a[1]>b[1]?1:0);
  }
  for(var i=0;i<heads.length;i++){(function(col){
    heads[col].addEventListener('click',function(){
      var th=heads[col], asc=!th.classList.contains('asc');
      for(var j=0;j<heads.length;j++){heads[j].classList.remove('asc','desc');}
      th.classList.add(asc?'asc':'desc');
      var body=table.tBodies[0], rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(r1,r2){
        var c=cmp(key(r1.cells[col]),key(r2.cells[col]));
        if(key(r1.cells[col])[0]===2||key(r2.cells[col])[0]===2){return c;}
        return asc?c:-c;
      });
      rows.forEach(function(r){body.appendChild(r);});
    });
  })(i);}
})();
"""


def _reading_note() -> str:
    from cleftscore.score.reference import BORDERLINE_PERCENTILE, OUTSIDE_PERCENTILE

    return (
        "Reading: where the score falls among the reference's normal faces. Percentile = the percent of them "
        f"that score closer to normal; below {BORDERLINE_PERCENTILE:g}: within the normal range, "
        f"{BORDERLINE_PERCENTILE:g} to {OUTSIDE_PERCENTILE:g}: borderline, {OUTSIDE_PERCENTILE:g} and above: "
        "outside the normal range. Heat maps: over the face only, in multiples of the normal faces' variation "
        "at each point; the scored region is outlined in cyan."
    )


_READING_NOTE = _reading_note()


def _with_reading(row: Mapping[str, Any]) -> Mapping[str, Any]:
    """The row with a ``reading`` cell made from its ``reference_percentile`` and ``reference_z`` (if any)."""
    from cleftscore.score.reference import reading_of

    try:
        pct, z = float(row["reference_percentile"]), float(row["reference_z"])
    except (KeyError, TypeError, ValueError):
        return row
    if not 0.0 <= pct <= 100.0 or str(row.get("status", "")) != "ok":
        return row
    return {**row, "reading": f"{reading_of(pct)} (less normal than {pct:.0f} % of normal faces, z {z:+.1f})"}


def write_html_report(
    path: str | os.PathLike,
    rows: Sequence[Mapping[str, Any]],
    *,
    title: str = "cleftscore report",
    columns: Sequence[str],
    settings: Mapping[str, Any] | None = None,
    image_key: str = "panel_png",
    link_key: str = "panel_link",
    max_image_px: int = 384,
) -> Path:
    """One self-contained HTML page with every photo's panel and score.

    The file opens from disk with no network: small pictures are embedded (base64), styles and
    the sorting script are inline, and no external resource is referenced. Each picture can
    link to its full-size file beside the report.

    Parameters
    ----------
    path : path-like
        Destination ``.html`` file (parent folders are created).
    rows : sequence of dict
        One dict per photo with at least ``"file"``, ``"status"`` (``"ok"`` or a failure
        label), ``"score"`` and ``"message"`` (the failure reason); ``image_key`` optionally
        names a PNG file to embed.
    title : str
        Page title and heading.
    columns : sequence of str
        Table columns, in order (for example ``["file", "status", "score", "message"]``).
        Clicking a header sorts by it (numbers numerically, empty cells last).
    settings : dict, optional
        Settings summary shown above the table (method, metric, ROI, generator...).
    image_key : str
        Row key holding the path of the picture to embed (default ``"panel_png"``). A ``.jpg``
        file is embedded as it is (make it small, see :func:`thumbnail_jpeg`); other pictures are
        downscaled to ``max_image_px`` and embedded as PNG.
    link_key : str
        Row key holding a link (relative to the report) to the full-size picture; the embedded
        thumbnail is wrapped in it.
    max_image_px : int
        Height limit of embedded pictures that are not JPEG thumbnails.

    Returns
    -------
    Path
        The written path.

    Notes
    -----
    Every piece of text (file names, messages, settings) is escaped with :func:`html.escape`:
    file names are user data.
    """
    esc = html.escape
    cols = list(columns)
    rows = [_with_reading(r) for r in rows]
    if any(r.get("reading") for r in rows) and "reading" not in cols:
        cols.insert(cols.index("score") + 1 if "score" in cols else 0, "reading")
    n_ok = sum(1 for r in rows if str(r.get("status", "")) == "ok")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        f'<p class="disclaimer"><strong>{esc(DISCLAIMER)}</strong> Scores and heat maps support '
        "research and discussion; they are not a diagnosis.</p>",
        f"<p>{n_ok} of {len(rows)} photos scored. Higher score = closer to normal. Click a column header to sort.</p>",
    ]
    if settings:
        parts.append('<h2>Settings</h2><dl class="settings">')
        for k, v in settings.items():
            parts.append(f"<dt>{esc(str(k))}</dt><dd>{esc(_fmt(v)[0])}</dd>")
        parts.append("</dl>")
    if any(r.get("reading") for r in rows):
        parts.append(f"<p>{esc(_READING_NOTE)}</p>")
    parts.append('<div class="wide"><table id="results"><thead><tr>')
    parts.extend(f"<th>{esc(c)}</th>" for c in cols)
    parts.append("<th>panel</th></tr></thead><tbody>")
    for row in rows:
        failed = str(row.get("status", "")) != "ok"
        parts.append('<tr class="failed">' if failed else "<tr>")
        for c in cols:
            text, key = _fmt(row.get(c))
            parts.append(f'<td data-sort="{esc(key)}">{esc(text)}</td>')
        img_path = row.get(image_key)
        uri = _data_uri(img_path, max_image_px) if img_path else None
        if uri:
            alt = esc(f"panel of {row.get('file', '')}")
            img = f'<img src="{uri}" alt="{alt}">'
            link = row.get(link_key)
            if link:
                img = f'<a href="{esc(str(link))}">{img}</a>'
            parts.append(f'<td class="img" data-sort="">{img}</td>')
        else:
            parts.append('<td class="img" data-sort=""></td>')
        parts.append("</tr>")
    parts.append("</tbody></table></div>")
    parts.append(f"<script>{_JS}</script>")
    parts.append("</body></html>")
    from cleftscore.io import atomic_write_bytes

    return atomic_write_bytes(path, ("\n".join(parts) + "\n").encode("utf-8", errors="backslashreplace"))
