import assert from "node:assert/strict";
import { test } from "node:test";

import { ResumePoint, compareEventIds, parseEventId, storageKey } from "../../clients/js/resume.js";

class MemoryStorage {
  constructor() {
    this.map = new Map();
  }
  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }
  setItem(key, value) {
    this.map.set(key, String(value));
  }
}

test("event ids compare by position within an epoch, numerically, not as strings", () => {
  assert.equal(compareEventIds("ab12-1700000000000-9", "ab12-1700000000000-10"), -1);
  assert.equal(compareEventIds("ab12-1700000000001-0", "ab12-1700000000000-10"), 1);
  assert.equal(compareEventIds("ab12-5-5", "ab12-5-5"), 0);
  assert.equal(compareEventIds("ab12-5-5", "cd34-1-1"), null);
  assert.equal(compareEventIds("nonsense", "ab12-5-5"), null);
  assert.deepEqual(parseEventId("ab12-17-3"), { epoch: "ab12", ms: 17n, seq: 3n });
  assert.equal(parseEventId("ab12-17"), null);
});

test("each event counts once: duplicates and older events from a replay overlap are refused", () => {
  const point = new ResumePoint({ storage: new MemoryStorage(), key: "k" });
  const seen = ["e1-100-0", "e1-100-1", "e1-100-1", "e1-99-0", "e1-101-0", "e1-100-1", "e1-102-0"].filter((id) =>
    point.accept(id),
  );
  assert.deepEqual(seen, ["e1-100-0", "e1-100-1", "e1-101-0", "e1-102-0"]);
  assert.equal(point.lastEventId, "e1-102-0");
  assert.equal(point.accept("not-an-id"), false);
});

test("the position survives a reload through the storage, per subscription key", () => {
  const storage = new MemoryStorage();
  const key = storageKey("http://hub", "lang=en");
  const first = new ResumePoint({ storage, key });
  first.accept("e1-5-0");
  first.accept("e1-6-0");
  const reloaded = new ResumePoint({ storage, key });
  assert.equal(reloaded.lastEventId, "e1-6-0");
  assert.equal(reloaded.accept("e1-6-0"), false, "what arrived before the reload is not shown again");
  assert.equal(new ResumePoint({ storage, key: storageKey("http://hub", "lang=ar") }).lastEventId, null);
});

test("an explicit position (a snapshot's last_event_id) wins over the stored one", () => {
  const storage = new MemoryStorage();
  storage.setItem("k", "e1-6-0");
  assert.equal(new ResumePoint({ storage, key: "k", lastEventId: "e1-9-0" }).lastEventId, "e1-9-0");
});

test("a reset moves to another epoch; later events of that epoch are then ordered against it", () => {
  const point = new ResumePoint({ lastEventId: "old-500-0" });
  point.move("new-10-0");
  assert.equal(point.accept("new-9-0"), false);
  assert.equal(point.accept("new-11-0"), true);
});

test("a changed filter keeps the position under the new key", () => {
  const storage = new MemoryStorage();
  const point = new ResumePoint({ storage, key: "a" });
  point.accept("e1-1-0");
  point.rekey("b");
  assert.equal(storage.getItem("b"), "e1-1-0");
});

test("storage that throws (disabled, full) does not break resuming within the page", () => {
  const broken = {
    getItem() {
      throw new Error("SecurityError");
    },
    setItem() {
      throw new Error("QuotaExceededError");
    },
  };
  const point = new ResumePoint({ storage: broken, key: "k" });
  assert.equal(point.lastEventId, null);
  assert.equal(point.accept("e1-1-0"), true);
  assert.equal(point.lastEventId, "e1-1-0");
});
