//! A broker of a cluster on etcd (docs/cluster.md): what it knows of the
//! other brokers and of placement, the loop that makes it serve exactly the
//! streams placed on it, the handover of a stream that moves away, and the
//! controller's duties (placing new streams, moving the streams of a broker
//! whose session ended). On one node (`Broker::cluster` is `None`) the
//! broker leads everything and none of this runs.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use strata_cluster::controller::{self, Controller};
use strata_cluster::membership::{self, BrokerInfo};
use strata_cluster::placement::{self, Placement};
use strata_meta::{LeaseId, Revision};
use strata_stream::{Handover, StreamError};

use crate::groups::OFFSETS_TOPIC;
use crate::txn::TXN_TOPIC;
use crate::{Broker, BrokerError};

/// How often the placement loop looks even without a watch event.
const RECONCILE_EVERY: Duration = Duration::from_millis(1000);

/// How long a produce waits for a stream placed here whose takeover is
/// still under way, before it answers NOT_LEADER_OR_FOLLOWER.
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

/// How a drain ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Streams now led by other brokers.
    pub moved: usize,
    /// Streams still led here when the time was up.
    pub left: usize,
}

/// What a broker of a cluster is given at start.
#[derive(Debug, Clone, Copy)]
pub struct Membership {
    /// The lease of its registration (its session), which also holds the
    /// `controller` key while it is controller.
    pub lease: LeaseId,
}

/// A cluster broker's view of the others and of placement, refreshed from
/// the metadata store on every change it watches.
pub(crate) struct ClusterView {
    lease: LeaseId,
    brokers: RwLock<BTreeMap<i32, BrokerInfo>>,
    placements: RwLock<HashMap<u64, (Placement, Revision)>>,
    controller: Mutex<Option<Controller>>,
    wake: tokio::sync::Notify,
    /// Woken when this broker starts serving a stream, and after every
    /// placement pass: produces waiting for a takeover look again.
    served: tokio::sync::Notify,
}

impl ClusterView {
    pub(crate) fn new(membership: Membership) -> Self {
        ClusterView {
            lease: membership.lease,
            brokers: RwLock::new(BTreeMap::new()),
            placements: RwLock::new(HashMap::new()),
            controller: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            served: tokio::sync::Notify::new(),
        }
    }

    fn placement(&self, stream: u64) -> Option<(Placement, Revision)> {
        self.placements.read().unwrap_or_else(|e| e.into_inner()).get(&stream).cloned()
    }

    fn is_live(&self, node: i32) -> bool {
        self.brokers.read().unwrap_or_else(|e| e.into_inner()).contains_key(&node)
    }
}

/// The stream's partition if it belongs to an internal topic whose
/// coordinator shards follow leadership.
fn internal_partition(broker: &Broker, stream: u64) -> Option<(&'static str, usize)> {
    for name in [OFFSETS_TOPIC, TXN_TOPIC] {
        if let Some(t) = broker.catalog.topic(name)
            && let Some(p) = t.partition_streams.iter().position(|s| *s == stream)
        {
            return Some((name, p));
        }
    }
    None
}

impl Broker {
    /// Whether this broker is one of a cluster.
    pub fn is_cluster(&self) -> bool {
        self.cluster.is_some()
    }

    /// [`Broker::lead`] for an append: a stream placed here whose takeover
    /// is under way (the previous leader's WAL tail being recovered) is
    /// waited for, up to [`TAKEOVER_WAIT`], instead of refused. A client
    /// pipelines several batches of a partition; had the first been refused
    /// NOT_LEADER_OR_FOLLOWER and the next, sent right after, found the
    /// takeover done, the next would be refused OUT_OF_ORDER_SEQUENCE_NUMBER
    /// (its predecessor never recorded), and librdkafka answers that by
    /// bumping its epoch and renumbering every unacknowledged batch: a batch
    /// a dead or fenced leader had already made durable is then stored twice.
    /// Requests of a connection are handled in order, so waiting here keeps
    /// the batches in order.
    pub(crate) async fn lead_for_append(
        &self,
        topic: &strata_cluster::TopicRecord,
        index: i32,
    ) -> Result<Arc<strata_stream::Stream>, BrokerError> {
        // The common case, without registering for a wake-up.
        let first = self.lead(topic, index);
        let (Some(view), Err(_)) = (&self.cluster, &first) else { return first };
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        loop {
            let served = view.served.notified();
            tokio::pin!(served);
            served.as_mut().enable();
            let err = match self.lead(topic, index) {
                Ok(stream) => return Ok(stream),
                Err(e) => e,
            };
            let placed_here = topic
                .partition_streams
                .get(usize::try_from(index).unwrap_or(usize::MAX))
                .and_then(|id| view.placement(*id))
                .is_some_and(|(p, _)| p.leader == self.config.node_id);
            if !placed_here || tokio::time::Instant::now() >= deadline {
                return Err(err);
            }
            let _ = tokio::time::timeout_at(deadline, served).await;
        }
    }

    /// The leader of `stream` and its leader epoch; `None` while no live
    /// broker leads it.
    pub(crate) fn leader_of(&self, stream: u64) -> Option<(i32, i32)> {
        match &self.cluster {
            None => Some((self.config.node_id, self.streams.open_stream(stream).epoch())),
            Some(view) => {
                let (p, _) = view.placement(stream)?;
                view.is_live(p.leader).then_some((p.leader, p.epoch))
            }
        }
    }

    /// The leader of partition `index` of `topic` (its id, leader epoch and
    /// endpoint), for KIP-951's answer to a request sent to another broker;
    /// during a handover by this broker, the target.
    pub(crate) fn current_leader(
        &self,
        topic: &strata_cluster::TopicRecord,
        index: i32,
    ) -> Option<(i32, i32, BrokerInfo)> {
        let stream = *topic.partition_streams.get(usize::try_from(index).ok()?)?;
        let (mut leader, mut epoch) = self.leader_of(stream)?;
        // This broker is handing the stream over: the target leads next.
        if leader == self.config.node_id
            && let Some((p, _)) = self.moving(stream)
            && let Some(target) = p.target
        {
            (leader, epoch) = (target, p.epoch + 1);
        }
        Some((leader, epoch, self.endpoint(leader)?))
    }

    /// The replicas Metadata shows for `stream` (the leader first).
    pub(crate) fn replicas_of(&self, stream: u64) -> Vec<i32> {
        match &self.cluster {
            None => vec![self.config.node_id],
            Some(view) => match view.placement(stream) {
                Some((p, _)) if !p.replicas.is_empty() => p.replicas,
                Some((p, _)) => vec![p.leader],
                None => Vec::new(),
            },
        }
    }

    /// The reassignment in progress for `stream`: its target replicas.
    pub(crate) fn moving(&self, stream: u64) -> Option<(Placement, Revision)> {
        let view = self.cluster.as_ref()?;
        view.placement(stream).filter(|(p, _)| p.target.is_some())
    }

    /// The live brokers (this one alone on one node).
    pub(crate) fn live_brokers(&self) -> Vec<BrokerInfo> {
        match &self.cluster {
            None => vec![self.own_info()],
            Some(view) => {
                let brokers = view.brokers.read().unwrap_or_else(|e| e.into_inner());
                let mut out: Vec<BrokerInfo> = brokers.values().cloned().collect();
                if !brokers.contains_key(&self.config.node_id) {
                    out.push(self.own_info());
                    out.sort_by_key(|b| b.node_id);
                }
                out
            }
        }
    }

    /// Where clients reach broker `node`, if it is live.
    pub(crate) fn endpoint(&self, node: i32) -> Option<BrokerInfo> {
        self.live_brokers().into_iter().find(|b| b.node_id == node)
    }

    fn own_info(&self) -> BrokerInfo {
        BrokerInfo {
            node_id: self.config.node_id,
            host: self.config.advertised_host.clone(),
            port: self.config.advertised_port,
        }
    }

    /// The controller's node id (this broker on one node; -1 while none is
    /// elected).
    pub(crate) fn controller_id(&self) -> i32 {
        match &self.cluster {
            None => self.config.node_id,
            Some(view) => view.controller.lock().unwrap_or_else(|e| e.into_inner()).map_or(-1, |c| c.node_id),
        }
    }

    /// Asks for `stream` to be led by `replicas[0]`, showing `replicas`: the
    /// placement's target is set and the current leader hands over.
    pub(crate) async fn request_move(&self, stream: u64, replicas: Vec<i32>) -> Result<(), BrokerError> {
        let Some(view) = &self.cluster else { return Ok(()) };
        let Some(&to) = replicas.first() else { return Ok(()) };
        for _ in 0..16 {
            let current = placement::list_one(self.meta.as_ref(), stream).await?;
            let Some((mut p, rev)) = current else { return Err(BrokerError::NotLeaderOrFollower) };
            p.replicas = replicas.clone();
            p.target = (p.leader != to).then_some(to);
            if let Some(rev) = placement::write(self.meta.as_ref(), stream, &p, Some(rev), vec![]).await? {
                view.placements.write().unwrap_or_else(|e| e.into_inner()).insert(stream, (p, rev));
                view.wake.notify_one();
                return Ok(());
            }
        }
        Err(BrokerError::Cluster(strata_cluster::ClusterError::Contended))
    }

    /// A graceful stop (SIGTERM): moves every stream this broker leads to
    /// the least-loaded other live brokers, by the same handover as a
    /// reassignment (tail indexed, producer state snapshotted, next epoch),
    /// so that coordinators move with their internal partitions, and waits
    /// until placement names other leaders, up to `limit`. What is still
    /// here then fails over once the session ends, as after a crash (the
    /// tail read from this broker's WAL). One node has nothing to move.
    pub async fn drain(&self, limit: Duration) -> Drained {
        let Some(view) = &self.cluster else { return Drained::default() };
        let me = self.config.node_id;
        let deadline = tokio::time::Instant::now() + limit;
        let led = || -> Vec<u64> {
            let placements = view.placements.read().unwrap_or_else(|e| e.into_inner());
            placements.iter().filter(|(_, (p, _))| p.leader == me).map(|(s, _)| *s).collect()
        };
        let mine = led();
        let others: Vec<i32> = {
            let brokers = view.brokers.read().unwrap_or_else(|e| e.into_inner());
            brokers.keys().copied().filter(|b| *b != me).collect()
        };
        let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
        for (p, _) in view.placements.read().unwrap_or_else(|e| e.into_inner()).values() {
            *counts.entry(p.leader).or_default() += 1;
        }
        for stream in &mine {
            let Some(to) = placement::least_loaded(&others, &counts) else { break };
            *counts.entry(to).or_default() += 1;
            if let Err(e) = self.request_move(*stream, vec![to]).await {
                tracing::warn!(stream, to, error = %e, "drain: cannot request the move");
            }
        }
        loop {
            let left = led().len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                let drained = Drained { moved: mine.len().saturating_sub(left), left };
                tracing::info!(moved = drained.moved, left = drained.left, "drained");
                return drained;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Cancels the move of `stream`: the target is cleared and the replicas
    /// are the leader again.
    pub(crate) async fn cancel_move(&self, stream: u64) -> Result<(), BrokerError> {
        let Some(view) = &self.cluster else { return Ok(()) };
        for _ in 0..16 {
            let Some((mut p, rev)) = placement::list_one(self.meta.as_ref(), stream).await? else {
                return Ok(());
            };
            if p.target.is_none() {
                return Ok(());
            }
            p.target = None;
            p.replicas = vec![p.leader];
            if let Some(rev) = placement::write(self.meta.as_ref(), stream, &p, Some(rev), vec![]).await? {
                view.placements.write().unwrap_or_else(|e| e.into_inner()).insert(stream, (p, rev));
                return Ok(());
            }
        }
        Err(BrokerError::Cluster(strata_cluster::ClusterError::Contended))
    }

    /// Takes a new topic's streams: at once on one node; in a cluster the
    /// controller places them and their leaders take them.
    pub(crate) async fn take_new_streams(&self, streams: &[u64]) -> Result<(), BrokerError> {
        match &self.cluster {
            None => {
                self.streams.acquire(streams).await?;
            }
            Some(view) => view.wake.notify_one(),
        }
        Ok(())
    }

    /// Removes a deleted topic's placements (its leaders then stop serving).
    pub(crate) async fn drop_placements(&self, streams: &[u64]) {
        if self.cluster.is_some()
            && let Err(e) = placement::delete(self.meta.as_ref(), streams).await
        {
            tracing::warn!(error = %e, "deleting the placements of a deleted topic failed");
        }
    }

    /// Starts the cluster's tasks: watches of membership, placement, topics
    /// and the controller key, and the loop that acts on them.
    pub(crate) fn start_cluster_tasks(self: &Arc<Self>) {
        if self.cluster.is_none() {
            return;
        }
        for prefix in [membership::BROKERS, placement::PREFIX, "topics/", controller::CONTROLLER_KEY] {
            let weak = Arc::downgrade(self);
            tokio::spawn(async move {
                loop {
                    let Some(b) = weak.upgrade() else { return };
                    let watch = match b.meta.current_revision().await {
                        Ok(rev) => b.meta.watch_from(prefix, rev + 1).await,
                        Err(e) => Err(e),
                    };
                    let mut watch = match watch {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::warn!(prefix, error = %e, "cluster watch failed; retrying");
                            drop(b);
                            tokio::time::sleep(RECONCILE_EVERY).await;
                            continue;
                        }
                    };
                    if let Some(view) = &b.cluster {
                        view.wake.notify_one();
                    }
                    drop(b);
                    loop {
                        let event = watch.next().await;
                        let Some(b) = weak.upgrade() else { return };
                        match event {
                            Some(Ok(_)) => {
                                if let Some(view) = &b.cluster {
                                    view.wake.notify_one();
                                }
                            }
                            Some(Err(e)) => {
                                tracing::warn!(prefix, error = %e, "cluster watch ended; reopening");
                                break;
                            }
                            None => break,
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(b) = weak.upgrade() else { return };
                if let Err(e) = b.reconcile().await {
                    tracing::warn!(error = %e, "cluster reconcile failed");
                }
                let Some(view) = b.cluster.as_ref() else { return };
                view.served.notify_waiters();
                let woken = view.wake.notified();
                let b = Arc::downgrade(&b);
                let _ = tokio::time::timeout(RECONCILE_EVERY, woken).await;
                if b.upgrade().is_none() {
                    return;
                }
            }
        });
    }

    /// One pass: refresh the view, act as controller if elected, then serve,
    /// hand over or drop streams until this broker serves what is placed on
    /// it.
    async fn reconcile(self: &Arc<Self>) -> Result<(), BrokerError> {
        let Some(view) = &self.cluster else { return Ok(()) };
        let mut placements = self.refresh_view().await?;
        let current = match controller::current(self.meta.as_ref()).await? {
            Some(c) => Some(c),
            None => controller::try_become(self.meta.as_ref(), self.config.node_id, view.lease).await?,
        };
        *view.controller.lock().unwrap_or_else(|e| e.into_inner()) = current;
        if let Some(c) = current.filter(|c| c.node_id == self.config.node_id)
            && self.act_as_controller(c, &placements).await?
        {
            placements = placement::list(self.meta.as_ref()).await?;
            *view.placements.write().unwrap_or_else(|e| e.into_inner()) = placements.clone();
        }
        let me = self.config.node_id;
        let served: std::collections::HashSet<u64> = self.streams.served_ids().into_iter().collect();
        // Streams placed here and not served yet, by the WAL they recover
        // from: a dead broker's streams are taken over together.
        let mut to_serve: BTreeMap<Option<i32>, Vec<(u64, &Placement, Revision)>> = BTreeMap::new();
        for (stream, (p, rev)) in &placements {
            if p.leader == me && !served.contains(stream) {
                to_serve.entry(p.recover_from).or_default().push((*stream, p, *rev));
            }
        }
        for (from, group) in to_serve {
            self.serve_streams(from, group).await;
        }
        for (stream, (p, rev)) in &placements {
            if p.leader != me || !served.contains(stream) {
                continue;
            }
            if let Some(target) = p.target.filter(|t| *t != me)
                && let Err(e) = self.hand_over(*stream, p, *rev, target).await
            {
                tracing::warn!(stream, target, error = %e, "handing a stream over failed");
            }
        }
        for stream in served {
            let placed_here = placements.get(&stream).is_some_and(|(p, _)| p.leader == me);
            if !placed_here {
                tracing::warn!(stream, "a stream served here is placed elsewhere: dropping it");
                self.unload_internal(stream).await;
                self.producers.drop_partition(stream);
                if let Err(e) = self.streams.release(stream, Handover::InWal).await {
                    tracing::warn!(stream, error = %e, "dropping a stream failed");
                }
            }
        }
        Ok(())
    }

    /// Reads the live brokers, the topics, the placements and the controller
    /// into the view (a broker does so before it serves); returns the
    /// placements.
    pub(crate) async fn refresh_view(&self) -> Result<HashMap<u64, (Placement, Revision)>, BrokerError> {
        let Some(view) = &self.cluster else { return Ok(HashMap::new()) };
        let brokers = membership::live_brokers(self.meta.as_ref()).await?;
        *view.brokers.write().unwrap_or_else(|e| e.into_inner()) =
            brokers.into_iter().map(|b| (b.node_id, b)).collect();
        self.catalog.reload().await?;
        let placements = placement::list(self.meta.as_ref()).await?;
        *view.placements.write().unwrap_or_else(|e| e.into_inner()) = placements.clone();
        *view.controller.lock().unwrap_or_else(|e| e.into_inner()) =
            controller::current(self.meta.as_ref()).await?;
        Ok(placements)
    }

    /// The controller's duties; `true` when it wrote a placement.
    async fn act_as_controller(
        &self,
        term: Controller,
        placements: &HashMap<u64, (Placement, Revision)>,
    ) -> Result<bool, BrokerError> {
        let Some(view) = &self.cluster else { return Ok(false) };
        let live: Vec<i32> = view.brokers.read().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        let mut counts: BTreeMap<i32, usize> = live.iter().map(|b| (*b, 0)).collect();
        for (p, _) in placements.values() {
            if let Some(c) = counts.get_mut(&p.leader) {
                *c += 1;
            }
        }
        let mut wrote = false;
        // Streams of a broker whose session ended go to the least loaded.
        for (stream, (p, rev)) in placements {
            if live.contains(&p.leader) {
                continue;
            }
            let Some(to) = placement::least_loaded(&live, &counts) else { break };
            let next = Placement {
                leader: to,
                epoch: p.epoch + 1,
                replicas: vec![to],
                target: None,
                recover_from: Some(p.leader),
            };
            if placement::write(self.meta.as_ref(), *stream, &next, Some(*rev), vec![term.condition()])
                .await?
                .is_some()
            {
                tracing::info!(stream, from = p.leader, to, epoch = next.epoch, "stream failed over");
                *counts.entry(to).or_default() += 1;
                wrote = true;
            }
        }
        // New streams, spread by count.
        for topic in self.catalog.topics() {
            for stream in &topic.partition_streams {
                if placements.contains_key(stream) {
                    continue;
                }
                let Some(to) = placement::least_loaded(&live, &counts) else { return Ok(wrote) };
                let next =
                    Placement { leader: to, epoch: 0, replicas: vec![to], target: None, recover_from: None };
                if placement::write(self.meta.as_ref(), *stream, &next, None, vec![term.condition()])
                    .await?
                    .is_some()
                {
                    *counts.entry(to).or_default() += 1;
                    wrote = true;
                }
            }
        }
        Ok(wrote)
    }

    /// Serves streams placed here that recover from one WAL (`from`'s):
    /// one takeover of them all, so that the WAL is read once; a stream
    /// whose takeover needs more (this broker restarted) goes alone.
    async fn serve_streams(self: &Arc<Self>, from: Option<i32>, group: Vec<(u64, &Placement, Revision)>) {
        let mut alone = Vec::new();
        if group.len() > 1 {
            let claims: Vec<(u64, i32)> = group.iter().map(|(s, p, _)| (*s, p.epoch)).collect();
            let prefix = from.map(wal_prefix);
            let taken = self.streams.take_over_many(&claims, prefix.as_deref()).await;
            for (stream, result) in taken {
                match result {
                    Ok(s) => self.serving(stream, &s).await,
                    Err(StreamError::StaleEpoch { .. }) => {
                        alone.extend(group.iter().filter(|(s, ..)| *s == stream).copied())
                    }
                    Err(StreamError::Closed(_)) => {}
                    Err(e) => tracing::warn!(stream, error = %e, "taking a placed stream failed"),
                }
            }
        } else {
            alone = group;
        }
        for (stream, p, rev) in alone {
            if let Err(e) = self.serve_stream(stream, p, rev).await {
                tracing::warn!(stream, error = %e, "taking a placed stream failed");
            }
        }
    }

    /// What follows a stream's takeover: an internal partition's
    /// coordinator shard is loaded. (Its producer state loads afresh on first
    /// use, being keyed by the new leader epoch; dropping it here would race
    /// with the appends the stream already takes.)
    async fn serving(self: &Arc<Self>, stream: u64, taken: &strata_stream::Stream) {
        tracing::info!(stream, epoch = taken.epoch(), "serving a placed stream");
        if let Some(view) = &self.cluster {
            view.served.notify_waiters();
        }
        self.load_internal(stream).await;
    }

    /// Starts serving a stream placed here: takes it over at the placed
    /// epoch (recovering a previous leader's WAL tail when it did not hand
    /// over), or, when the stream already reached that epoch (this broker
    /// restarted), at the next one, recorded in the placement first.
    async fn serve_stream(
        self: &Arc<Self>,
        stream: u64,
        p: &Placement,
        rev: Revision,
    ) -> Result<(), BrokerError> {
        let from = p.recover_from.map(wal_prefix);
        let taken = match self.streams.take_over(stream, p.epoch, from.as_deref()).await {
            Ok(s) => s,
            Err(StreamError::StaleEpoch { current, .. }) => {
                // This broker led the stream at `current` before its restart:
                // its own WAL holds the tail. (Not `p.recover_from`: the
                // previous leader's tail was indexed when this broker took
                // the stream at `current`; its later appends are in its own
                // WAL only.)
                let next =
                    Placement { epoch: current + 1, recover_from: Some(self.config.node_id), ..p.clone() };
                if placement::write(self.meta.as_ref(), stream, &next, Some(rev), vec![]).await?.is_none() {
                    return Ok(());
                }
                let from = next.recover_from.map(wal_prefix);
                self.streams.take_over(stream, next.epoch, from.as_deref()).await?
            }
            Err(StreamError::Closed(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        self.serving(stream, &taken).await;
        Ok(())
    }

    /// Hands a stream over to `target`: appends stop, the tail is uploaded
    /// and indexed, the producer state snapshotted, and the placement names
    /// the target at the next epoch.
    async fn hand_over(
        &self,
        stream: u64,
        p: &Placement,
        rev: Revision,
        target: i32,
    ) -> Result<(), BrokerError> {
        let Some(s) = self.streams.served(stream) else { return Ok(()) };
        let started = std::time::Instant::now();
        self.unload_internal(stream).await;
        self.streams.release(stream, Handover::Indexed).await?;
        self.producers.snapshot_stream(&s).await?;
        self.producers.drop_partition(stream);
        // The placement as it is now (a request may have changed it since
        // this pass read it), as long as it still names this broker.
        let (mut seen, mut seen_rev) = (p.clone(), rev);
        let mut wrote = None;
        let mut next = seen.clone();
        for _ in 0..16 {
            let to = seen.target.filter(|t| *t != self.config.node_id).unwrap_or(target);
            next = Placement {
                leader: to,
                epoch: seen.epoch + 1,
                target: None,
                recover_from: None,
                ..seen.clone()
            };
            wrote = placement::write(self.meta.as_ref(), stream, &next, Some(seen_rev), vec![]).await?;
            if wrote.is_some() {
                break;
            }
            match placement::list_one(self.meta.as_ref(), stream).await? {
                Some((now, now_rev)) if now.leader == self.config.node_id => {
                    (seen, seen_rev) = (now, now_rev)
                }
                _ => break,
            }
        }
        if let (Some(rev), Some(view)) = (wrote, &self.cluster) {
            view.placements.write().unwrap_or_else(|e| e.into_inner()).insert(stream, (next.clone(), rev));
        }
        tracing::info!(
            stream,
            target,
            epoch = next.epoch,
            placed = wrote.is_some(),
            ms = started.elapsed().as_millis() as u64,
            "stream handed over"
        );
        Ok(())
    }

    async fn load_internal(self: &Arc<Self>, stream: u64) {
        let Some((topic, p)) = internal_partition(self, stream) else { return };
        let Some(s) = self.streams.served(stream) else { return };
        if topic == OFFSETS_TOPIC {
            let done = if self.coordinator.is_loaded() {
                self.coordinator.load_shard(p, s).await.map_err(|e| e.to_string())
            } else {
                self.coordinator_ready().await.map_err(|e| e.to_string())
            };
            if let Err(e) = done {
                tracing::warn!(partition = p, error = %e, "loading a group coordinator shard failed");
            }
        } else if self.txn.is_loaded() {
            match self.txn.load_shard(p, s).await {
                Ok(deciding) => {
                    for (id, meta) in deciding {
                        self.spawn_completion(id, meta);
                    }
                }
                Err(e) => tracing::warn!(partition = p, error = %e, "loading a transaction shard failed"),
            }
        } else if let Err(e) = self.txn_ready().await {
            tracing::warn!(partition = p, error = %e, "loading the transaction coordinator failed");
        }
    }

    async fn unload_internal(&self, stream: u64) {
        match internal_partition(self, stream) {
            Some((OFFSETS_TOPIC, p)) => self.coordinator.unload_shard(p).await,
            Some((_, p)) => self.txn.unload_shard(p).await,
            None => {}
        }
    }
}

/// The WAL prefix of broker `node` in a cluster.
pub fn wal_prefix(node: i32) -> String {
    format!("wal/{node}")
}

/// What a remote coordinator answered for one partition of a transaction.
pub(crate) enum RemoteAdd {
    /// Added, or verified in the ongoing transaction.
    Done,
    /// The error code the coordinator gave.
    Refused(i16),
}

impl Broker {
    /// The coordinator of transactional id `id` when another broker of the
    /// cluster is it (it leads the id's partition of `__transaction_state`).
    pub(crate) fn remote_txn_coordinator(&self, id: &str) -> Option<BrokerInfo> {
        self.cluster.as_ref()?;
        self.coordinator_for(TXN_TOPIC, id).filter(|b| b.node_id != self.config.node_id)
    }

    /// The live broker that leads `key`'s partition of the internal topic
    /// `topic` (Kafka's rule: the key's Java hash modulo the partitions):
    /// the key's coordinator.
    pub(crate) fn coordinator_for(&self, topic: &str, key: &str) -> Option<BrokerInfo> {
        let topic = self.catalog.topic(topic)?;
        let p = crate::groups::partition_for(key, topic.partitions());
        let stream = *topic.partition_streams.get(p as usize)?;
        let (leader, _) = self.leader_of(stream)?;
        self.endpoint(leader)
    }

    /// Asks the remote coordinator `peer` to add `partition` to (or, with
    /// `verify_only`, to check it is in) the transaction of `id`
    /// (AddPartitionsToTxn v4, the brokers' form).
    pub(crate) async fn remote_add_to_txn(
        &self,
        peer: &BrokerInfo,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partition: &(String, i32),
        verify_only: bool,
    ) -> Result<RemoteAdd, BrokerError> {
        use kafka_protocol::messages::add_partitions_to_txn_request::{
            AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
        };
        use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ProducerId};
        use kafka_protocol::protocol::StrBytes;
        let mut topic = AddPartitionsToTxnTopic::default();
        topic.name = StrBytes::from_string(partition.0.clone()).into();
        topic.partitions = vec![partition.1];
        let mut txn = AddPartitionsToTxnTransaction::default();
        txn.transactional_id = StrBytes::from_string(id.to_string()).into();
        txn.producer_id = ProducerId(producer_id);
        txn.producer_epoch = epoch;
        txn.verify_only = verify_only;
        txn.topics = vec![topic];
        let mut req = AddPartitionsToTxnRequest::default();
        req.transactions = vec![txn];
        let resp: AddPartitionsToTxnResponse =
            self.peers.call(peer, kafka_protocol::messages::ApiKey::AddPartitionsToTxn, 4, &req).await?;
        if resp.error_code != 0 {
            return Ok(RemoteAdd::Refused(resp.error_code));
        }
        let code = resp
            .results_by_transaction
            .iter()
            .flat_map(|r| r.topic_results.iter())
            .flat_map(|t| t.results_by_partition.iter())
            .map(|p| p.partition_error_code)
            .find(|c| *c != 0);
        Ok(code.map_or(RemoteAdd::Done, RemoteAdd::Refused))
    }

    /// Writes a transaction marker to `topic`-`partition` on its leader, another
    /// broker (WriteTxnMarkers v1), answered once durable there; the leader's
    /// error code when it refused it.
    pub(crate) async fn remote_marker(
        &self,
        topic: &strata_cluster::TopicRecord,
        partition: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<i16, BrokerError> {
        use kafka_protocol::messages::write_txn_markers_request::{
            WritableTxnMarker, WritableTxnMarkerTopic,
        };
        use kafka_protocol::messages::{ProducerId, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
        use kafka_protocol::protocol::StrBytes;
        let (leader, _, peer) =
            self.current_leader(topic, partition).ok_or(BrokerError::NotLeaderOrFollower)?;
        if leader == self.config.node_id {
            return Err(BrokerError::NotLeaderOrFollower);
        }
        let mut t = WritableTxnMarkerTopic::default();
        t.name = StrBytes::from_string(topic.name.clone()).into();
        t.partition_indexes = vec![partition];
        let mut marker = WritableTxnMarker::default();
        marker.producer_id = ProducerId(producer_id);
        marker.producer_epoch = epoch;
        marker.transaction_result = commit;
        marker.coordinator_epoch = coordinator_epoch;
        marker.topics = vec![t];
        let mut req = WriteTxnMarkersRequest::default();
        req.markers = vec![marker];
        let resp: WriteTxnMarkersResponse =
            self.peers.call(&peer, kafka_protocol::messages::ApiKey::WriteTxnMarkers, 1, &req).await?;
        Ok(resp
            .markers
            .iter()
            .flat_map(|m| m.topics.iter())
            .flat_map(|t| t.partitions.iter())
            .map(|p| p.error_code)
            .find(|c| *c != 0)
            .unwrap_or(0))
    }
}
