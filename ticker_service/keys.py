"""Every name ticker uses in Redis: keys, key prefixes, pub/sub channels and arq job names.

All of ticker's keys live under ``ticker:``; arq keeps its own under ``arq:``. A ``*_PREFIX`` is followed by the part
named in its comment. Values are part of the deployed data: changing one orphans what is stored under the old name.
"""

from __future__ import annotations

from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix

# -- the broker: history, current state, live delivery (broker/redis.py) ----------------------------------------
EVENTS_STREAM = "ticker:events"  # stream: fields t (type), f (flash id), v (version), d (ninjs JSON)
FLASH_PREFIX = "ticker:flash:"  # + flash id; hash: doc, version, ev:<version> (event id of each version), w (why
# it waits, JSON, while scheduled or pending)
RECENT_FLASHES = "ticker:recent"  # zset of the not-withdrawn flash ids, by creation
FLASH_INDEX = "ticker:index"  # zset of every kept flash id, by creation (the oldest are dropped past the cap)
WITHHELD_PREFIX = "ticker:withheld:"  # + "scheduled" (by embargo ms) or "pending" (by request ms): zsets of flash ids
IDEMPOTENCY_PREFIX = "ticker:idem:"  # + scope (editor + Idempotency-Key); the claim, then the recorded result
PUBLISHED_CURSOR = "ticker:published"  # id of the last event published on LIVE_CHANNEL (keeps live order)
HISTORY_EPOCH = "ticker:epoch"  # created with the history, so it changes when Redis loses the history
LIVE_CHANNEL = "ticker:live"  # pub/sub: every event, to every hub
WAKE_CHANNEL = "ticker:wake"  # pub/sub: "a job is queued", so workers poll now rather than at their next poll
FANOUT_PENDING = "ticker:fanout:pending"  # zset "<flash id>:<version>" of recorded events not yet fanned out, by ms
FANOUT_WOKEN = "ticker:fanout:woken"  # set when record wakes the workers, deleted when a worker starts fanning out:
# flashes recorded in between wake nobody again (the worker that was woken takes them too)
FANOUT_QUEUED = "ticker:fanout:queued"  # id of the last fan-out job queued (the next record skips queueing its own
# while that job is queued and not yet started: the job fans out every pending event)

# -- arq: the job queue and the job names (broker/redis.py writes the fan-out job itself, in its record script) ---
ARQ_QUEUE = default_queue_name  # "arq:queue": zset of queued job ids by when they may run
ARQ_JOB_PREFIX = job_key_prefix  # "arq:job:" + job id: the serialised job
ARQ_IN_PROGRESS_PREFIX = in_progress_key_prefix  # "arq:in-progress:" + job id: set while a worker runs the job
FANOUT_JOB = "fanout"  # job id "fanout:<flash id>:<version>"
RELEASE_JOB = "release"  # job id "release:<flash id>:<version>", deferred to the embargo
PUSH_PLAN_JOB = "push_plan"  # job id "push_plan:<flash id>:<version>"
PUSH_TOPIC_JOB = "push_topic"  # job id "push_topic:<flash id>:<version>"
PUSH_BATCH_JOB = "push_batch"  # job id PUSH_BATCH_JOB_ID_PREFIX + "<flash id>:<version>:<batch>"
PUSH_BATCH_JOB_ID_PREFIX = "push:"  # the batch jobs' ids; continuations add ".c", retries ".r"

# -- devices and their pushes (push/store.py, workers/push/jobs.py) ---------------------------------------------
DEVICE_PREFIX = "ticker:device:"  # + device id; hash: d (device JSON), s (secret hash), ix (index keys), a (address)
DEVICE_ADDRESS_PREFIX = "ticker:devaddr:"  # + sha256(platform, token or endpoint) -> device id
DEVICE_INDEX_PREFIX = "ticker:devidx:"  # + "<shard>:<facet>:<value>"; set of device ids (lang:en, cat:*, urg:5, ...)
# Devices are indexed in DEVICE_INDEX_SHARDS shards (a hash of the id), so a flash's devices are planned a slice of
# shards at a time. Part of the key layout: changing it needs every device indexed again. Releases before the
# shards wrote DEVICE_INDEX_PREFIX + "<facet>:<value>" (no shard): still read, and moved to the shards by the worker.
DEVICE_INDEX_SHARDS = 256
DEVICE_SCRATCH_PREFIX = "ticker:devtmp:"  # + random hex + ":"; temporary sets of one index lookup
PUSH_STATS = "ticker:push:stats"  # hash "<platform>:<outcome>" -> count, kept by the push jobs
PUSH_SENT_PREFIX = "ticker:pushed:"  # + "<flash id>:<version>"; set of the device ids already claimed for the event
PUSH_DEVICE_HOUR_PREFIX = "ticker:pushstories:"  # + "<device id>:<hour>"; hash of the stories counted this hour
PUSH_PLAN_PREFIX = "ticker:pushplan:"  # + "<flash id>:<version>"; list of the matching device ids, in batch order
PUSH_PLAN_STATE_PREFIX = "ticker:pushplanned:"  # + "<flash id>:<version>"; hash: cursor (next shard to plan),
# "w:<batch>" for each batch chain waiting for the plan to reach it
PUSH_REINDEX_JOB = "push_reindex"  # job id "push_reindex:<run>": moves devices of the unsharded index to the shards

# -- security (security/tokens.py, ratelimit.py, audit.py) -------------------------------------------------------
EDITOR_TOKENS = "ticker:tokens"  # hash: name -> JSON {"id", "sha256", "created", "scopes", "languages", ...}
EDITOR_TOKEN_DIGESTS = "ticker:tokens:sha256"  # hash: a token's SHA-256 (current or still overlapping) -> its name
RATE_PREFIX = "ticker:rate:"  # + "<limited key>:<window start>"; count of one minute's window
AUDIT_STREAM = "ticker:audit"  # stream: field e (the entry's JSON), capped by count

# -- operations (ops/reports.py) ----------------------------------------------------------------------------------
OPS_REPORT_PREFIX = "ticker:ops:"  # + "<hub|worker>:<host>:<pid>"; one process's JSON report, with a TTL
OPS_HUBS = "ticker:ops:hubs"  # set of the hub process ids that report
OPS_WORKERS = "ticker:ops:workers"  # set of the worker process ids that report

# -- time to screen (ops/reach.py, ops/canary.py) -------------------------------------------------------------------
REACH_PREFIX = "ticker:reach:"  # + flash id; hash "<version>|<surface>|<bin>" -> weight, "<version>|<surface>|n"
REACH_MINUTE_PREFIX = "ticker:reach-min:"  # + unix minute; hash "<surface>|<bin>" -> weight, "<surface>|n"
CANARY_KEY = "ticker:canary:key"  # the canary reader's secret, shared by every hub (SET NX once)
CANARY_LOCK = "ticker:canary:lock"  # held by the hub that runs this round of the canary
