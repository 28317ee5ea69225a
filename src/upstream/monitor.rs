//! Each upstream's health, checked in the background every `health_period`: the last answer
//! of every upstream, for `/readyz` and the metrics, and the operators' log of sensors going
//! down and coming back.
//!
//! Invariants:
//! - Reading the latest health never waits on an upstream: a dead sensor's check is bounded
//!   by its `stats_timeout`, on the monitor's task, never on a probe's request.
//! - An upstream going down (or found down at its first check) is logged once at WARN with
//!   its reason; coming back is logged once at INFO. A sensor that stays down does not repeat
//!   its line every period.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{Health, Upstream};

/// One upstream's last check.
#[derive(Debug, Clone)]
pub struct Checked {
    /// What the check found.
    pub health: Health,
    /// When it finished.
    pub at: SystemTime,
}

/// The health monitor. See the module documentation.
#[derive(Debug)]
pub struct Monitor {
    upstreams: Vec<Upstream>,
    last: Mutex<Vec<Option<Checked>>>,
}

impl Monitor {
    /// A monitor of `upstreams`, none checked yet.
    pub fn new(upstreams: &[Upstream]) -> Monitor {
        Monitor {
            upstreams: upstreams.to_vec(),
            last: Mutex::new(vec![None; upstreams.len()]),
        }
    }

    /// Each upstream's name and last check (`None`: not checked yet), in configuration order.
    pub fn latest(&self) -> Vec<(&str, Option<Checked>)> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner()).clone();
        self.upstreams
            .iter()
            .map(Upstream::name)
            .zip(last)
            .collect()
    }

    /// Checks every upstream at once and records the results; logs changes (see the module
    /// documentation).
    pub async fn check_all(&self) {
        let mut checks = tokio::task::JoinSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            // A directory no refresh has looked at yet is not checked: its health would say
            // "up" whether it exists or not (the readyz probe shows it as not checked yet).
            if matches!(u, Upstream::Local(l) if !l.listed()) {
                continue;
            }
            let u = u.clone();
            checks.spawn(async move { (i, u.health().await) });
        }
        while let Some(r) = checks.join_next().await {
            let Ok((i, health)) = r else { continue };
            let name = self.upstreams[i].name();
            let before = {
                let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                let before = last[i].as_ref().map(|c| c.health.up);
                last[i] = Some(Checked {
                    health: health.clone(),
                    at: SystemTime::now(),
                });
                before
            };
            match (before, health.up) {
                (Some(true) | None, false) => tracing::warn!(
                    upstream = %name,
                    kind = health.kind,
                    error = health.error.as_deref().unwrap_or("-"),
                    "upstream down"
                ),
                (Some(false), true) => {
                    tracing::info!(upstream = %name, kind = health.kind, "upstream up again");
                }
                _ => {}
            }
        }
    }

    /// Checks every `period`, from now on, for as long as the process runs.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A directory not listed yet at a check (just started) is looked at again soon —
        // every 100 ms, 50 times at most in the process's life (a directory whose listing
        // hangs waits for the periods) — so that readiness does not wait a whole period.
        let (mut soon, mut quick_left) = (false, 50u32);
        loop {
            if soon {
                tokio::time::sleep(Duration::from_millis(100)).await;
            } else {
                tick.tick().await;
            }
            self.check_all().await;
            let unlisted = self
                .upstreams
                .iter()
                .any(|u| matches!(u, Upstream::Local(l) if !l.listed()));
            soon = unlisted && quick_left > 0;
            quick_left = quick_left.saturating_sub(u32::from(soon));
        }
    }
}
