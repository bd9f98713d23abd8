// Local SQS server (AWS JSON 1.0 and query protocols) for the export-service
// dev/test stack, backed by the local-aws-sqs package (pinned to 2.0.2).
// State is in memory only: queues and messages are gone after a restart
// (scripts/stack.sh provisions the queues again on every start).
//
//   node server.mjs [PORT]        PORT defaults to $STACK_SQS_PORT, then 9324
//   STACK_SQS_HOST=127.0.0.1      address to bind; it is also the host of every queue URL
//   STACK_SQS_PATCH=0             run local-aws-sqs unpatched (see below)
//
// Queue URLs look like http://127.0.0.1:PORT/123456789012/QUEUE-NAME; the
// server routes a request by the last path segment of its QueueUrl.
//
// This is local-aws-sqs's own createSqsServer (an http server around
// createRequestHandler), plus two fixes that make it count as AWS SQS does
// (STACK_SQS_PATCH=0 runs it unpatched):
//
//  1. In 2.0.2 every ChangeMessageVisibility call adds 1 to the message's
//     ApproximateReceiveCount, as a ReceiveMessage does. A consumer that
//     extends the visibility of a long job a few times would see its message
//     moved to the dead-letter queue after far fewer than maxReceiveCount real
//     receives, and read an inflated receive count.
//  2. Its ApproximateNumberOfMessages counts in-flight messages too; AWS's
//     counts only those available for retrieval (visible, not delayed).
import { createServer } from "node:http";
import { createRequestHandler } from "local-aws-sqs";

const port = Number(process.argv[2] ?? process.env.STACK_SQS_PORT ?? 9324);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`sqs: bad port ${process.argv[2] ?? process.env.STACK_SQS_PORT}`);
  process.exit(2);
}
const hostname = process.env.STACK_SQS_HOST || "127.0.0.1";
const probeQueue = "local-sqs-server-probe";

const { service, requestHandler } = createRequestHandler({
  port,
  // Passing hostname makes the server bind that address only (without it,
  // Node listens on every interface) and puts it into the queue URLs.
  hostname,
  region: process.env.AWS_REGION || "us-east-1",
  // AWS refuses to re-create a queue within 60 s of deleting it; tests that
  // delete and re-create queues would trip over that, so it is off here.
  emulateQueueCreationLifecycle: false,
  // One throwaway queue, only to reach the queue class (see patchChangeVisibility).
  queues: [{ QueueName: probeQueue }],
});

const Queue = service.Queues.find((q) => q.QueueName === probeQueue)?.constructor;
service.Queues = service.Queues.filter((q) => q.QueueName !== probeQueue);
if (process.env.STACK_SQS_PATCH !== "0") {
  patchChangeVisibility(Queue);
  patchMessageCount(Queue);
}

function patchChangeVisibility(Queue) {
  if (typeof Queue?.createRecord !== "function" || typeof Queue.prototype.changeVisibility !== "function") {
    console.error("sqs: warning: local-aws-sqs internals changed; ChangeMessageVisibility fix not applied");
    return;
  }
  let inChangeVisibility = 0;
  const createRecord = Queue.createRecord;
  // Every message record (sent, or moved to a DLQ) is made here; its receive
  // count ignores the writes made while ChangeMessageVisibility runs.
  Queue.createRecord = function (...args) {
    const result = createRecord.apply(this, args);
    const attrs = result?.[0]?.attributes;
    if (attrs && "ApproximateReceiveCount" in attrs) {
      let count = attrs.ApproximateReceiveCount;
      Object.defineProperty(attrs, "ApproximateReceiveCount", {
        enumerable: true,
        configurable: true,
        get: () => count,
        set: (v) => {
          if (inChangeVisibility === 0) count = v;
        },
      });
    }
    return result;
  };
  const changeVisibility = Queue.prototype.changeVisibility;
  Queue.prototype.changeVisibility = function (...args) {
    inChangeVisibility++;
    try {
      return changeVisibility.apply(this, args);
    } finally {
      inChangeVisibility--;
    }
  };
}

function patchMessageCount(Queue) {
  const getAttributes = Queue?.prototype?.getAttributes;
  if (typeof getAttributes !== "function") {
    console.error("sqs: warning: local-aws-sqs internals changed; ApproximateNumberOfMessages fix not applied");
    return;
  }
  // Its ApproximateNumberOfMessages is every message not delayed, in flight or
  // not; an in-flight message is never a delayed one, so subtracting
  // ApproximateNumberOfMessagesNotVisible leaves the visible ones. (Its
  // StartMessageMoveTask reads the count too, and so would under-count a move
  // out of a DLQ whose messages are being received at the same time.)
  Queue.prototype.getAttributes = function (names) {
    const attrs = getAttributes.call(this, names);
    if (attrs && "ApproximateNumberOfMessages" in attrs) {
      const all = getAttributes.call(this, ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]);
      const visible = Number(all.ApproximateNumberOfMessages) - Number(all.ApproximateNumberOfMessagesNotVisible);
      attrs.ApproximateNumberOfMessages = String(Math.max(0, visible));
    }
    return attrs;
  };
}

const server = createServer(requestHandler);
server.on("error", (err) => {
  console.error(`sqs: ${err.message}`);
  process.exit(1);
});
server.listen(port, hostname, () => {
  service.PORT = server.address().port; // the real port, also when PORT is 0
  console.log(`local-aws-sqs listening on http://${hostname}:${service.PORT}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    // Long-polling ReceiveMessage calls would keep close() waiting; exit at once.
    server.close();
    process.exit(0);
  });
}
