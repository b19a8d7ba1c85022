// Drives the official socket.io-client against a running server for tests/realtime.
// Usage: node client.mjs '<json config>'; prints one JSON object (the outcome) on stdout.
// config: {url, sessionId, apiKey, socketApiKey, scenario, taskDetails}
// (apiKey is used for REST calls; socketApiKey: also send it in the handshake auth)
import { io } from "socket.io-client";

const config = JSON.parse(process.argv[2]);
const received = [];
const done = (outcome) => {
  process.stdout.write(JSON.stringify({ received, ...outcome }) + "\n");
  process.exit(0);
};
setTimeout(() => done({ timeout: true }), config.timeoutMs || 40000);

async function rest(method, path, body) {
  const response = await fetch(config.url + path, {
    method,
    headers: { Authorization: `Bearer ${config.apiKey}`, "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return response.json();
}

const newTask = () => rest("POST", "/start/send-message", {
  sessionId: config.sessionId,
  message: { actionType: "newTask", newState: "start", taskDetails: config.taskDetails },
});

let lastEventId = null;
const socket = io(config.url, {
  // A function: called again on each (re)connection, so the server learns what we have.
  auth: (cb) => cb({
    sessionId: config.sessionId,
    ...(config.socketApiKey ? { apiKey: config.apiKey } : {}),
    ...(lastEventId === null ? {} : { lastEventId }),
  }),
  transports: ["websocket"],
  reconnection: false,
});

const record = (name) => (data) => {
  received.push({ name, data });
  if (data && typeof data.eventId === "number") lastEventId = data.eventId;
};
socket.on("message", record("message"));
socket.on("end_session", record("end_session"));
socket.on("connect_error", (err) => done({ connectError: { message: err.message, data: err.data } }));

if (config.scenario === "task") {
  let taskId = null;
  socket.once("connect", async () => { taskId = (await newTask()).taskId; });
  socket.on("message", (data) => {
    if (data.type === "task_completed") done({ taskId: taskId || data.taskId });
  });
} else if (config.scenario === "terminate") {
  socket.once("connect", () => {
    socket.emit("message", { actionType: "state", newState: "bogus" }, (ack) => {
      received.push({ name: "ack-invalid", data: ack });
      socket.emit("message", { actionType: "state", newState: "terminate" }, (ack2) => {
        received.push({ name: "ack", data: ack2 });
      });
    });
  });
  socket.on("disconnect", (reason) => done({ disconnectReason: reason }));
} else if (config.scenario === "reconnect") {
  let taskId = null, dropped = false, firstConnect = true;
  socket.on("connect", async () => {
    if (firstConnect) {
      firstConnect = false;
      taskId = (await newTask()).taskId;
    }
  });
  socket.on("message", async (data) => {
    if (!dropped && data.type === "action") {
      // Drop the connection mid-task and stay away until the task is over.
      dropped = true;
      const droppedAt = lastEventId;
      socket.disconnect();
      for (;;) {
        const task = await rest("GET", `/task/${config.sessionId}/${taskId}`);
        if (!task.pending) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      received.push({ name: "dropped", data: { lastEventId: droppedAt } });
      socket.connect();
    } else if (data.type === "task_completed") {
      const log = await rest("GET", `/sessions/${config.sessionId}/events?after=0`);
      done({ taskId, log: log.events });
    }
  });
} else if (config.scenario === "listen") {
  // Connect and only listen, as seed 003's example does, until the session ends.
  socket.on("disconnect", (reason) => done({ disconnectReason: reason }));
}
