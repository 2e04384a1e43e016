// Drives the official TypeScript SDK through the rest of the platform: models, FIM,
// embeddings, moderation, files, batch jobs, agents, conversations (streamed too), libraries
// and a search that waits for the client's confirmation. The SDK validates every answer
// against its own schemas (zod), so a field it does not accept fails the step.
// Usage: ALIZE_URL=http://127.0.0.1:8000 ALIZE_KEY=... node platform.mjs
// Prints one JSON object: each step's values, or {"error": ...} for a step that threw.
import { Mistral } from "@mistralai/mistralai";

const client = new Mistral({ apiKey: process.env.ALIZE_KEY, serverURL: process.env.ALIZE_URL });
const args = { temperature: 0, maxTokens: 8 };
const result = {};

async function step(name, run) {
  try {
    result[name] = (await run()) ?? {};
  } catch (err) {
    result[name] = { error: `${err.name}: ${err.message}`.slice(0, 2000) };
  }
}

async function processed(libraryId, documentId) {
  for (let i = 0; i < 600; i++) {
    const status = await client.beta.libraries.documents.status({ libraryId, documentId });
    if (!["todo", "in_progress"].includes(status.processStatus)) return status.processStatus;
    await new Promise((done) => setTimeout(done, 100));
  }
  return "timed out";
}

await step("models", async () => {
  const list = await client.models.list();
  const one = await client.models.retrieve({ modelId: "mistral-small-latest" });
  return { ids: list.data.map((m) => m.id), retrieved: one.id };
});

await step("fim", async () => {
  const res = await client.fim.complete({ model: "codestral-latest", prompt: "def add(a, b):\n    return", suffix: "\n",
                                          ...args });
  return { finishReason: res.choices[0].finishReason, completionTokens: res.usage.completionTokens };
});

await step("tools", async () => {
  const tools = [{ type: "function", function: { name: "get_weather", description: "The weather in a city",
                                                   parameters: { type: "object", properties: { city: { type: "string" } },
                                                                 required: ["city"] } } }];
  const called = await client.chat.complete({ model: "mistral-small-latest", toolChoice: "any", tools, maxTokens: 40,
                                              temperature: 0,
                                              messages: [{ role: "user", content: "Weather in Paris?" }] });
  const schema = { type: "object", properties: { answer: { type: "integer" } }, required: ["answer"],
                   additionalProperties: false };
  const shaped = await client.chat.complete({
    model: "mistral-small-latest", maxTokens: 20, temperature: 0,
    responseFormat: { type: "json_schema", jsonSchema: { name: "sum", schemaDefinition: schema, strict: true } },
    messages: [{ role: "user", content: "What is 2 + 2? Answer in JSON." }] });
  const call = called.choices[0].message.toolCalls[0];
  return { finishReason: called.choices[0].finishReason, name: call.function.name,
           arguments: typeof call.function.arguments === "string" ? JSON.parse(call.function.arguments)
                                                                  : call.function.arguments,
           json: JSON.parse(shaped.choices[0].message.content) };
});

await step("fimStream", async () => {
  let text = "";
  const stream = await client.fim.stream({ model: "codestral-latest", prompt: "def add(a, b):\n    return", ...args });
  for await (const event of stream) text += event.data.choices[0]?.delta?.content ?? "";
  return { streamed: text.length > 0 };
});

await step("embeddings", async () => {
  const res = await client.embeddings.create({ model: "mistral-embed", inputs: ["Bonjour", "Hello"] });
  return { count: res.data.length, dimensions: res.data[0].embedding.length };
});

await step("moderation", async () => {
  const res = await client.classifiers.moderate({ model: "mistral-moderation-latest", inputs: ["Hello there"] });
  return { results: res.results.length };
});

await step("files", async () => {
  const line = JSON.stringify({ custom_id: "0", body: { messages: [{ role: "user", content: "Hi" }], max_tokens: 4 } });
  const file = await client.files.upload({ purpose: "batch",
                                           file: { fileName: "lines.jsonl", content: new TextEncoder().encode(line + "\n") } });
  const listed = await client.files.list({});
  const got = await client.files.retrieve({ fileId: file.id });
  const body = await new Response(await client.files.download({ fileId: file.id })).text();
  const signed = await client.files.getSignedUrl({ fileId: file.id, expiry: 1 });
  const viaLink = await (await fetch(signed.url)).text();  // no key: the token is the authority
  const brief = await client.files.upload({ purpose: "batch", expiry: 1,
                                            file: { fileName: "brief.jsonl", content: new TextEncoder().encode(line + "\n") } });
  const job = await client.batch.jobs.create({ inputFiles: [file.id], endpoint: "/v1/chat/completions",
                                              model: "mistral-small-latest" });
  const jobs = await client.batch.jobs.list({});
  const cancelled = await client.batch.jobs.cancel({ jobId: job.id });
  const again = await client.batch.jobs.get({ jobId: job.id });
  return { listed: listed.data.some((f) => f.id === file.id), name: got.filename, roundTrip: body === line + "\n",
           signedUrl: viaLink === line + "\n", expiresIn: brief.expiresAt - brief.createdAt,
           jobListed: jobs.data.some((j) => j.id === job.id), cancelled: [cancelled.status, again.status] };
});

await step("conversations", async () => {
  const agent = await client.beta.agents.create({ model: "mistral-small-latest", name: "ts agent",
                                                  instructions: "Answer briefly.", completionArgs: args });
  const updated = await client.beta.agents.update({ agentId: agent.id, updateAgentRequest: { description: "v1" } });
  const started = await client.beta.conversations.start({ agentId: agent.id, inputs: "Bonjour !" });
  const appended = await client.beta.conversations.append({ conversationId: started.conversationId,
                                                            conversationAppendRequest: { inputs: "Et encore ?" } });
  const history = await client.beta.conversations.getHistory({ conversationId: started.conversationId });
  const messages = await client.beta.conversations.getMessages({ conversationId: started.conversationId });
  const restarted = await client.beta.conversations.restart({
    conversationId: started.conversationId,
    conversationRestartRequest: { inputs: "Recommence.", fromEntryId: history.entries[0].id } });
  const events = [];
  const stream = await client.beta.conversations.startStream({ model: "mistral-small-latest", inputs: "Salut",
                                                               completionArgs: args });
  for await (const event of stream) events.push(event.event);
  const completion = await client.agents.complete({ agentId: agent.id, messages: [{ role: "user", content: "Hi" }],
                                                    maxTokens: 8 });
  await client.beta.conversations.delete({ conversationId: restarted.conversationId });
  await client.beta.agents.delete({ agentId: agent.id });
  return { version: updated.version, outputs: [started, appended].map((r) => r.outputs.map((o) => o.type)),
           entries: history.entries.map((e) => e.type), messages: messages.messages.length,
           restarted: restarted.conversationId !== started.conversationId, events,
           completion: completion.choices[0].finishReason };
});

await step("libraries", async () => {
  const library = await client.beta.libraries.create({ name: "ts shelf" });
  const document = await client.beta.libraries.documents.upload({
    libraryId: library.id,
    requestBody: { file: { fileName: "pass.md", content: new TextEncoder().encode(
      "# The Zephyr pass\n\nThe Zephyr pass crosses the northern range at 2,417 metres.\n") } } });
  const status = await processed(library.id, document.id);
  const agent = await client.beta.agents.create({
    model: "mistral-small-latest", name: "ts librarian", completionArgs: args,
    tools: [{ type: "document_library", libraryIds: [library.id],
              toolConfiguration: { requiresConfirmation: ["document_library"] } }] });
  const paused = await client.beta.conversations.start({ agentId: agent.id, inputs: "How high is the Zephyr pass?" });
  const call = paused.outputs[0];
  const resumed = await client.beta.conversations.append({
    conversationId: paused.conversationId,
    conversationAppendRequest: { inputs: [], toolConfirmations: [{ toolCallId: call.toolCallId, confirmation: "allow" }] } });
  await client.beta.agents.delete({ agentId: agent.id });
  await client.beta.libraries.delete({ libraryId: library.id });
  return { status, paused: [call.type, call.name, call.confirmationStatus], resumed: resumed.outputs.map((o) => o.type),
           found: resumed.outputs[0].info?.results?.[0]?.document_name };
});

console.log(JSON.stringify(result));
