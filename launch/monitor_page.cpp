#include "launch/monitor_page.h"

namespace strata {

namespace {

constexpr const char* kHead = R"HTML(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Strata run monitor</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em} .sub{color:#666;margin-bottom:1em}
.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1em;min-width:22em}
.card h2{font-size:1em;margin:0 0 .5em}
svg{background:#fff} polyline{fill:none;stroke-width:1.5}
#loss-line{stroke:#1f6fb2} #val-line{stroke:#d2691e} #tps-line{stroke:#2e8b57}
table{border-collapse:collapse} td,th{padding:.2em .6em;text-align:left;border-bottom:1px solid #eee}
.state-training,.state-evaluating,.state-checkpointing{color:#2e7d32}
.state-waiting,.state-starting{color:#b8860b} .state-stalled,.state-unknown{color:#c62828;font-weight:bold}
.state-finished{color:#555} .bar{background:#1f6fb2;height:.8em;display:inline-block}
</style></head><body>
<h1>Strata run monitor</h1>
<div class="sub" id="summary">loading</div>
<div class="cards">
<div class="card"><h2>Loss</h2><svg id="loss-chart" width="420" height="160"><polyline id="loss-line" points=""/><polyline id="val-line" points=""/></svg><div id="loss-range"></div></div>
<div class="card"><h2>Throughput (tokens/s)</h2><svg id="tps-chart" width="420" height="160"><polyline id="tps-line" points=""/></svg><div id="tps-range"></div></div>
<div class="card"><h2>Memory of rank 0</h2><table id="memory"></table></div>
<div class="card"><h2>Ranks</h2><table id="ranks"><thead><tr><th>rank</th><th>state</th><th>step</th><th>heartbeat age</th><th>activity</th></tr></thead><tbody></tbody></table></div>
</div>
<script type="application/json" id="initial-status">)HTML";

constexpr const char* kTail = R"HTML(</script>
<script>
"use strict";
function fmtBytes(b){const u=["B","KiB","MiB","GiB","TiB"];let i=0;while(b>=1024&&i<u.length-1){b/=1024;i++;}return b.toFixed(i?1:0)+" "+u[i];}
function fmtTime(s){if(s===null||!isFinite(s))return "?";if(s<60)return s.toFixed(1)+"s";const m=Math.round(s/60);return m<60?m+"m":Math.floor(m/60)+"h"+String(m%60).padStart(2,"0")+"m";}
function points(xs,ys,w,h,lo,hi){const out=[];const x0=xs.length?xs[0]:0,x1=xs.length?xs[xs.length-1]:1;
  for(let i=0;i<xs.length;i++){if(ys[i]===null)continue;const x=x1>x0?(xs[i]-x0)/(x1-x0)*(w-10)+5:w/2;
  const y=hi>lo?h-5-(ys[i]-lo)/(hi-lo)*(h-10):h/2;out.push(x.toFixed(1)+","+y.toFixed(1));}return out.join(" ");}
function range(arrs){let lo=Infinity,hi=-Infinity;for(const a of arrs)for(const v of a)if(v!==null){lo=Math.min(lo,v);hi=Math.max(hi,v);}return lo<=hi?[lo,hi]:[0,1];}
function render(s){
  document.getElementById("summary").textContent="step "+s.step+"/"+s.total_steps+" | elapsed "+fmtTime(s.elapsed_s)+" | eta "+fmtTime(s.eta_s)+
    " | "+s.world+" ranks (dp "+s.layout.dp+", sp "+s.layout.sp+", pp "+s.layout.pp+") | "+s.job;
  const h=s.history;const [lo,hi]=range([h.loss,h.val_loss]);
  document.getElementById("loss-line").setAttribute("points",points(h.step,h.loss,420,160,lo,hi));
  document.getElementById("val-line").setAttribute("points",points(h.step,h.val_loss,420,160,lo,hi));
  document.getElementById("loss-range").textContent=h.step.length?"last "+(s.last.loss===null?"?":s.last.loss.toFixed(4))+" (range "+lo.toFixed(3)+" to "+hi.toFixed(3)+")":"no steps yet";
  const [tlo,thi]=range([h.tokens_per_s]);
  document.getElementById("tps-line").setAttribute("points",points(h.step,h.tokens_per_s,420,160,tlo,thi));
  document.getElementById("tps-range").textContent=h.step.length?"last "+Math.round(s.last.tokens_per_s)+" tokens/s":"no steps yet";
  const mem=document.getElementById("memory");mem.innerHTML="";
  if(s.ranks.length){const m=s.ranks[0].memory;const peak=Math.max(1,...Object.values(m));
    for(const k of Object.keys(m)){const tr=mem.insertRow();tr.className="mem-row";tr.dataset.category=k;
      tr.insertCell().textContent=k;tr.insertCell().textContent=fmtBytes(m[k]);
      const bar=document.createElement("span");bar.className="bar";bar.style.width=(120*m[k]/peak).toFixed(0)+"px";tr.insertCell().appendChild(bar);}}
  const body=document.querySelector("#ranks tbody");body.innerHTML="";
  for(const r of s.ranks){const tr=body.insertRow();tr.className="rank state-"+r.state;tr.dataset.rank=r.rank;
    tr.insertCell().textContent=r.rank;tr.insertCell().textContent=r.state;tr.insertCell().textContent=r.step;
    tr.insertCell().textContent=r.heartbeat_age_s===null?"never":fmtTime(r.heartbeat_age_s);tr.insertCell().textContent=r.activity;}
  document.body.dataset.rendered="step-"+s.step;
}
render(JSON.parse(document.getElementById("initial-status").textContent));
setInterval(()=>fetch("/status").then(r=>r.json()).then(render).catch(()=>{
  document.getElementById("summary").textContent+=" | monitor unreachable";}),2000);
</script></body></html>
)HTML";

}  // namespace

std::string dashboard_html(const std::string& status_json) {
  // "</" would end the script element early; "<\/" is the same JSON string.
  std::string safe;
  safe.reserve(status_json.size());
  for (size_t i = 0; i < status_json.size(); ++i) {
    safe += status_json[i];
    if (status_json[i] == '<' && i + 1 < status_json.size() && status_json[i + 1] == '/')
      safe += '\\';
  }
  return kHead + safe + kTail;
}

}  // namespace strata
