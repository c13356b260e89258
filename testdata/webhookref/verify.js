// Verifies webhook deliveries with the reference library (npm
// standardwebhooks 1.1.1): one JSON object a line on stdin, {secret, id,
// timestamp, signature, body}; one line out for each: "ok" or the error.
// Run by the tandem package's TestWebhooks.
const { Webhook } = require('standardwebhooks')
const readline = require('node:readline')

const rl = readline.createInterface({ input: process.stdin })
rl.on('line', (line) => {
  const d = JSON.parse(line)
  try {
    const payload = new Webhook(d.secret).verify(d.body, {
      'webhook-id': d.id,
      'webhook-timestamp': d.timestamp,
      'webhook-signature': d.signature
    })
    process.stdout.write(payload && payload.type === 'tandem.changes' ? 'ok\n' : 'bad payload\n')
  } catch (e) {
    process.stdout.write(String(e.message || e).replace(/\n/g, ' ') + '\n')
  }
})
