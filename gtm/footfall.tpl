___TERMS_OF_SERVICE___

By creating or modifying this file you agree to Google Tag Manager's Community
Template Gallery Developer Terms of Service available at
https://developers.google.com/tag-manager/gallery-tos (or such other URL as
Google may provide), as modified from time to time.


___INFO___

{
  "type": "TAG",
  "id": "cvt_temp_public_id",
  "version": 1,
  "securityGroups": [],
  "displayName": "Footfall",
  "categories": [
    "ANALYTICS"
  ],
  "brand": {
    "id": "brand_dummy",
    "displayName": "Footfall"
  },
  "description": "Loads footfall.js (served first-party by your Footfall collector) and sends page views, custom events, identify calls and consent decisions. Automatic events (clicks, scroll depth, hovers, video, engagement) are switched on in the tag.",
  "containerContexts": [
    "WEB"
  ]
}


___TEMPLATE_PARAMETERS___

[
  {
    "type": "SELECT",
    "name": "command",
    "displayName": "Call",
    "macrosInSelect": false,
    "selectItems": [
      {
        "value": "init",
        "displayValue": "Load footfall.js (init; automatic page view)"
      },
      {
        "value": "track",
        "displayValue": "Track an event"
      },
      {
        "value": "page",
        "displayValue": "Page view (for manual page tracking)"
      },
      {
        "value": "identify",
        "displayValue": "Identify the visitor"
      },
      {
        "value": "consent",
        "displayValue": "Consent decision"
      }
    ],
    "simpleValueType": true,
    "defaultValue": "init",
    "help": "Every call also loads the script and runs init with the settings below once per page, so tags may fire in any order."
  },
  {
    "type": "TEXT",
    "name": "eventName",
    "displayName": "Event name",
    "simpleValueType": true,
    "help": "For example Signup Completed, or {{Event}}.",
    "valueValidators": [
      {
        "type": "NON_EMPTY"
      }
    ],
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "track",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "SIMPLE_TABLE",
    "name": "eventProperties",
    "displayName": "Event properties",
    "help": "Properties of the event; values may be variables.",
    "simpleTableColumns": [
      {
        "defaultValue": "",
        "displayName": "Name",
        "name": "key",
        "type": "TEXT",
        "isUnique": true,
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "defaultValue": "",
        "displayName": "Value",
        "name": "value",
        "type": "TEXT"
      }
    ],
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "track",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "pageName",
    "displayName": "Page name (optional)",
    "simpleValueType": true,
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "page",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "SIMPLE_TABLE",
    "name": "pageProperties",
    "displayName": "Extra page properties",
    "help": "Added to url, path, referrer, title and search.",
    "simpleTableColumns": [
      {
        "defaultValue": "",
        "displayName": "Name",
        "name": "key",
        "type": "TEXT",
        "isUnique": true,
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "defaultValue": "",
        "displayName": "Value",
        "name": "value",
        "type": "TEXT"
      }
    ],
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "page",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "userId",
    "displayName": "User ID",
    "simpleValueType": true,
    "help": "Your stable id for the person (the collector hashes it before storing).",
    "valueValidators": [
      {
        "type": "NON_EMPTY"
      }
    ],
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "identify",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "SIMPLE_TABLE",
    "name": "traits",
    "displayName": "Traits",
    "help": "Traits of the person.",
    "simpleTableColumns": [
      {
        "defaultValue": "",
        "displayName": "Name",
        "name": "key",
        "type": "TEXT",
        "isUnique": true,
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "defaultValue": "",
        "displayName": "Value",
        "name": "value",
        "type": "TEXT"
      }
    ],
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "identify",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "SELECT",
    "name": "consentAnalytics",
    "displayName": "Analytics",
    "macrosInSelect": true,
    "selectItems": [
      {
        "value": "granted",
        "displayValue": "granted"
      },
      {
        "value": "denied",
        "displayValue": "denied"
      }
    ],
    "simpleValueType": true,
    "defaultValue": "granted",
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "consent",
        "type": "EQUALS"
      }
    ],
    "help": "A variable may return granted/denied or true/false (for example from your consent platform)."
  },
  {
    "type": "SELECT",
    "name": "consentMarketing",
    "displayName": "Marketing",
    "macrosInSelect": true,
    "selectItems": [
      {
        "value": "",
        "displayValue": "(not set)"
      },
      {
        "value": "granted",
        "displayValue": "granted"
      },
      {
        "value": "denied",
        "displayValue": "denied"
      }
    ],
    "simpleValueType": true,
    "defaultValue": "",
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "consent",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "TEXT",
    "name": "policyVersion",
    "displayName": "Policy version (optional)",
    "simpleValueType": true,
    "enablingConditions": [
      {
        "paramName": "command",
        "paramValue": "consent",
        "type": "EQUALS"
      }
    ]
  },
  {
    "type": "GROUP",
    "name": "settings",
    "displayName": "Settings (used by init)",
    "groupStyle": "ZIPPY_OPEN",
    "subParams": [
      {
        "type": "TEXT",
        "name": "scriptUrl",
        "displayName": "Script URL",
        "simpleValueType": true,
        "help": "footfall.js on your collector, e.g. https://collector.example.com/a/s.js (path set by FOOTFALL_TRACKER_PATH). Allow this host in the template's Permissions (Inject scripts).",
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          },
          {
            "type": "REGEX",
            "args": [
              "^https://.+"
            ]
          }
        ]
      },
      {
        "type": "TEXT",
        "name": "writeKey",
        "displayName": "Write key",
        "simpleValueType": true,
        "help": "The site's public write key.",
        "valueValidators": [
          {
            "type": "NON_EMPTY"
          }
        ]
      },
      {
        "type": "TEXT",
        "name": "endpoint",
        "displayName": "Collector URL (optional)",
        "simpleValueType": true,
        "help": "Defaults to the origin of the script URL."
      },
      {
        "type": "CHECKBOX",
        "name": "requireConsent",
        "checkboxText": "Require consent (hold events, store nothing until a Consent decision tag fires)",
        "simpleValueType": true,
        "defaultValue": false
      },
      {
        "type": "CHECKBOX",
        "name": "respectGPC",
        "checkboxText": "Honor Global Privacy Control as an opt-out",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "pageviews",
        "checkboxText": "Page views (load and SPA navigation)",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "clicks",
        "checkboxText": "Clicks on links and buttons",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "scroll",
        "checkboxText": "Scroll depth",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "hover",
        "checkboxText": "Hovers on [data-ff-hover] elements",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "video",
        "checkboxText": "HTML5 video and audio",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "CHECKBOX",
        "name": "engagement",
        "checkboxText": "Page engagement time",
        "simpleValueType": true,
        "defaultValue": true
      },
      {
        "type": "TEXT",
        "name": "dataLayerEvents",
        "displayName": "dataLayer events to forward (optional)",
        "simpleValueType": true,
        "help": "Comma-separated dataLayer event names that the tracker itself sends as track events, e.g. signup, purchase."
      }
    ]
  }
]


___SANDBOXED_JS_FOR_WEB_TEMPLATE___

// Footfall tag: queue calls for footfall.js (the standard pre-load stub,
// made with createArgumentsQueue), run init once, then inject the script.
const injectScript = require('injectScript');
const copyFromWindow = require('copyFromWindow');
const createArgumentsQueue = require('createArgumentsQueue');
const callInWindow = require('callInWindow');
const makeTableMap = require('makeTableMap');
const getType = require('getType');

const table = function(rows) {
  return (rows && makeTableMap(rows, 'key', 'value')) || {};
};
const flag = function(value) {
  return value === true || value === 'true' || value === 'granted';
};

// The stub: window.footfall pushes its arguments onto window.footfall.q
// until footfall.js replaces it and drains the queue.
if (getType(copyFromWindow('footfall')) !== 'function') {
  createArgumentsQueue('footfall', 'footfall.q');
}

const options = {
  writeKey: data.writeKey,
  requireConsent: data.requireConsent === true,
  respectGPC: data.respectGPC !== false,
  pageviews: data.pageviews !== false,
  clicks: data.clicks !== false,
  scroll: data.scroll !== false,
  hover: data.hover !== false,
  video: data.video !== false,
  engagement: data.engagement !== false
};
if (data.endpoint) options.endpoint = data.endpoint;
if (data.dataLayerEvents) {
  options.dataLayerEvents = data.dataLayerEvents.split(',').map(function(name) {
    return name.trim();
  }).filter(function(name) {
    return name.length > 0;
  });
}
// footfall.js ignores init after the first, so every tag may send it.
callInWindow('footfall', 'init', options);

const command = data.command;
if (command === 'track') {
  callInWindow('footfall', 'track', data.eventName, table(data.eventProperties));
} else if (command === 'page') {
  callInWindow('footfall', 'page', data.pageName, table(data.pageProperties));
} else if (command === 'identify') {
  callInWindow('footfall', 'identify', data.userId, table(data.traits));
} else if (command === 'consent') {
  const decision = {analytics: flag(data.consentAnalytics)};
  if (data.consentMarketing) decision.marketing = flag(data.consentMarketing);
  if (data.policyVersion) decision.policy_version = data.policyVersion;
  callInWindow('footfall', 'consent', decision);
}

// Injected once per page (same cache token); calls above wait in the queue.
injectScript(data.scriptUrl, data.gtmOnSuccess, data.gtmOnFailure, 'footfall');


___WEB_PERMISSIONS___

[
  {
    "instance": {
      "key": {
        "publicId": "inject_script",
        "versionId": "1"
      },
      "param": [
        {
          "key": "urls",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 1,
                "string": "https://collector.example.com/*"
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  },
  {
    "instance": {
      "key": {
        "publicId": "access_globals",
        "versionId": "1"
      },
      "param": [
        {
          "key": "keys",
          "value": {
            "type": 2,
            "listItem": [
              {
                "type": 3,
                "mapKey": [
                  {
                    "type": 1,
                    "string": "key"
                  },
                  {
                    "type": 1,
                    "string": "read"
                  },
                  {
                    "type": 1,
                    "string": "write"
                  },
                  {
                    "type": 1,
                    "string": "execute"
                  }
                ],
                "mapValue": [
                  {
                    "type": 1,
                    "string": "footfall"
                  },
                  {
                    "type": 8,
                    "boolean": true
                  },
                  {
                    "type": 8,
                    "boolean": true
                  },
                  {
                    "type": 8,
                    "boolean": true
                  }
                ]
              },
              {
                "type": 3,
                "mapKey": [
                  {
                    "type": 1,
                    "string": "key"
                  },
                  {
                    "type": 1,
                    "string": "read"
                  },
                  {
                    "type": 1,
                    "string": "write"
                  },
                  {
                    "type": 1,
                    "string": "execute"
                  }
                ],
                "mapValue": [
                  {
                    "type": 1,
                    "string": "footfall.q"
                  },
                  {
                    "type": 8,
                    "boolean": true
                  },
                  {
                    "type": 8,
                    "boolean": true
                  },
                  {
                    "type": 8,
                    "boolean": false
                  }
                ]
              }
            ]
          }
        }
      ]
    },
    "clientAnnotations": {
      "isEditedByUser": true
    },
    "isRequired": true
  }
]


___TESTS___

scenarios:
- name: track queues init then track, and injects the script
  code: |-
    const calls = [];
    mock('callInWindow', function() { calls.push(arguments); });
    mock('injectScript', function(url, onSuccess) { assertThat(url).isEqualTo('https://collector.example.com/a/s.js'); onSuccess(); });
    runCode({command: 'track', eventName: 'Signup', eventProperties: [{key: 'plan', value: 'pro'}],
      scriptUrl: 'https://collector.example.com/a/s.js', writeKey: 'ffw_test', dataLayerEvents: 'signup, purchase'});
    assertThat(calls[0][1]).isEqualTo('init');
    assertThat(calls[0][2].dataLayerEvents).isEqualTo(['signup', 'purchase']);
    assertThat(calls[1][1]).isEqualTo('track');
    assertThat(calls[1][3]).isEqualTo({plan: 'pro'});
    assertApi('gtmOnSuccess').wasCalled();


___NOTES___

Footfall tag template. Edit the Inject scripts permission to your collector's host.
