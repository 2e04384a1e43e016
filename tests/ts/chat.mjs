// Drives the official TypeScript SDK against an Alizé server.
// Usage: ALIZE_URL=http://127.0.0.1:8000 ALIZE_KEY=... node chat.mjs
import { Mistral } from "@mistralai/mistralai";

const client = new Mistral({ apiKey: process.env.ALIZE_KEY, serverURL: process.env.ALIZE_URL });
const messages = [{ role: "user", content: "Bonjour Mistral !" }];

const res = await client.chat.complete({ model: "mistral-small-latest", messages, maxTokens: 10 });
const result = {
  complete: {
    content: res.choices[0].message.content,
    finishReason: res.choices[0].finishReason,
    completionTokens: res.usage.completionTokens,
  },
};

let text = "";
let finish = null;
let usage = null;
const stream = await client.chat.stream({ model: "mistral-small-latest", messages, maxTokens: 10 });
for await (const event of stream) {
  const choice = event.data.choices[0];
  text += choice.delta.content ?? "";
  finish = choice.finishReason ?? finish;
  usage = event.data.usage ?? usage;
}
result.stream = { content: text, finishReason: finish, completionTokens: usage?.completionTokens };

try {
  await new Mistral({ apiKey: "bad", serverURL: process.env.ALIZE_URL }).models.list();
  result.badKeyStatus = 200;
} catch (err) {
  result.badKeyStatus = err.statusCode;
}
console.log(JSON.stringify(result));
