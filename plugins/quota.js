'use strict';

// The route throttles' arithmetic (docs/production.md, "The route throttles"), checked before
// anything is packaged: every frame the stage admits and every post it causes, all at once,
// must fit the account's API Gateway quota (--param accountQuota, 10,000 requests/s by default;
// 2,500 in the Regions AWS lists lower), and the routes' bursts together its burst (half the
// quota). A deploy that could exceed it stops here, naming each term, instead of leaving the
// account's other APIs to answer 429 at peak.
const ROUTES_POSTING_NOTHING = 9; // $connect $disconnect $default getRecentMessages join leave getPresence renewToken getConversations
const PUBLISH_MESSAGES = 100; // a POST /publish request's messages, at most
const DM_USERS = 2;
const CHANGE_ROUTES = 2; // editMessage deleteMessage
const MODERATION_ROUTES = 2; // ban unban
const FANOUT_INLINE = 'fanoutThreshold';

function terms(custom, environment) {
  const number = (value) => Number(value);
  const { limits, delivery, publish, moderate } = custom;
  const connections = number(limits.userConnections);
  const rates = {
    'frames: sendMessage': number(limits.sendMessageRate),
    'frames: sendDirectMessage': number(limits.sendDirectMessageRate),
    'frames: heartbeat': number(limits.heartbeatRate),
    [`frames: ${ROUTES_POSTING_NOTHING} other routes`]: ROUTES_POSTING_NOTHING * number(limits.routeRate),
    'frames: POST /publish': number(publish.rate),
    'frames: editMessage and deleteMessage': CHANGE_ROUTES * number(limits.changeRate),
    'frames: ban and unban': MODERATION_ROUTES * number(limits.moderationRate),
    'frames: POST /moderate': number(moderate.rate),
    'frames: markRead': number(limits.markReadRate),
    'frames: typing': number(limits.typingRate),
    'posts: room and channels inline (sendMessage x fanoutThreshold)': number(limits.sendMessageRate) * number(delivery.fanoutThreshold),
    'posts: direct messages (sendDirectMessage x 2 users x their connections)': number(limits.sendDirectMessageRate) * DM_USERS * connections,
    'posts: edits and deletes (2 routes x changeRate x the larger of fanoutThreshold and a DM\'s)':
      CHANGE_ROUTES * number(limits.changeRate) * Math.max(number(delivery.fanoutThreshold), DM_USERS * connections),
    'calls: bans (ban x a post and a close to each of the user\'s connections)': number(limits.moderationRate) * 2 * connections,
    'calls: POST /moderate (a ban\'s post and close to each connection)': number(moderate.rate) * 2 * connections,
    'posts: markRead (markReadRate x 2 users x their connections)': number(limits.markReadRate) * DM_USERS * connections,
    'posts: typing inline (typingRate x the larger of fanoutThreshold and a DM user\'s connections)':
      number(limits.typingRate) * Math.max(number(delivery[FANOUT_INLINE]), connections),
    'posts: the delivery workers (postingBudget)': number(delivery.postingBudget),
    'posts: published direct messages (publish x 100 x 2 x connections)': number(publish.rate) * PUBLISH_MESSAGES * DM_USERS * connections,
    'calls: the sweeper (SWEEP_CALLS_PER_SECOND)': number(environment.SWEEP_CALLS_PER_SECOND),
  };
  const bursts = {
    sendMessage: number(limits.sendMessageBurst),
    sendDirectMessage: number(limits.sendDirectMessageBurst),
    heartbeat: number(limits.heartbeatBurst),
    [`${ROUTES_POSTING_NOTHING} other routes`]: ROUTES_POSTING_NOTHING * number(limits.routeBurst),
    'POST /publish': number(publish.burst),
    'editMessage and deleteMessage': CHANGE_ROUTES * number(limits.changeBurst),
    'ban and unban': MODERATION_ROUTES * number(limits.moderationBurst),
    'POST /moderate': number(moderate.burst),
    markRead: number(limits.markReadBurst),
    typing: number(limits.typingBurst),
  };
  return { rates, bursts };
}

const sum = (values) => Object.values(values).reduce((a, b) => a + b, 0);

class Quota {
  constructor(serverless) {
    this.serverless = serverless;
    this.hooks = { initialize: () => this.check() };
  }

  check() {
    const service = this.serverless.service;
    const quota = Number(service.custom.limits.accountQuota);
    const { rates, bursts } = terms(service.custom, service.provider.environment);
    const bad = Object.entries({ ...rates, ...bursts, accountQuota: quota }).filter(([, v]) => !Number.isFinite(v) || v < 0);
    if (bad.length) {
      throw new this.serverless.classes.Error(`not a number: ${bad.map(([k]) => k).join(', ')}`);
    }
    const rounds = Number(service.custom.delivery.roundsPerSecond);
    if (!(rounds >= 0.1 && rounds <= 50)) {
      throw new this.serverless.classes.Error(
        `roundsPerSecond must be a number from 0.1 to 50 (frames a second a member of a busy channel gets), not ${service.custom.delivery.roundsPerSecond}`);
    }
    const total = sum(rates);
    const burst = sum(bursts);
    const list = (values) => Object.entries(values).map(([k, v]) => `  ${k}: ${v}`).join('\n');
    if (total > quota || burst > quota / 2) {
      throw new this.serverless.classes.Error(
        `The route throttles could exceed the account's API Gateway quota (accountQuota ${quota}/s, burst ${quota / 2}):\n` +
        `${list(rates)}\n  = ${total} requests/s\n${list(bursts)}\n  = ${burst} at once\n` +
        'Lower the parameters above (docs/production.md, "The route throttles"), or raise accountQuota once AWS has raised yours.');
    }
  }
}

module.exports = Quota;
module.exports.terms = terms;
