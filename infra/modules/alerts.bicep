// Alerts on the pipeline's health, all to one action group (email). A dead target site is the caller's
// problem: no alert counts failed fetches or items that ended `failed`.
// - poison rate: the share of finished items given up because every delivery crashed (trawl.poison.count).
// - queue age: the longest an item message waited for a worker (trawl.queue.latency).
// - orchestration failures and function failures: with telemetryMode OpenTelemetry the host records
//   requests for HTTP, Service Bus and Event Hubs triggers only, so failed Durable, queue and timer runs
//   are read from FunctionAppLogs (the Function App's diagnostic setting).
// - 5xx rate: the API's server spans, by response code.
// - PostgreSQL: workers that found it unreachable (trawl.items.processed), the server's failed connections,
//   CPU and storage (platform metric alerts).
// Every query is a file under infra/queries/; tests/infra checks its tables and columns against the
// telemetry the app produces. The log alerts query the Log Analytics workspace (App* tables), where
// FunctionAppLogs also lands: a query scoped to the Application Insights component could not read it.

@description('Optional. Location of the log alert rules (metric alerts and action groups are global).')
param location string = resourceGroup().location

@description('Optional. Tags applied to every alert resource.')
param tags object = {}

@description('Required. Name prefix of the alert rules.')
param namePrefix string

@description('Required. Name of the action group.')
param actionGroupName string

@description('Required. Email address the action group notifies.')
param alertEmail string

@description('Required. Resource id of the workspace-based Application Insights component the app reports to; the log alerts query its Log Analytics workspace.')
param applicationInsightsId string

@description('Required. Resource id of the PostgreSQL flexible server.')
param postgresServerId string

@description('Optional. Percentage of the items finished in an hour that were given up (poisoned), above which to alert.')
@minValue(1)
@maxValue(100)
param poisonPercentThreshold int = 5

@description('Optional. Fewest items finished in the hour for the poison rate to count (avoids alerting on 1 of 2).')
@minValue(1)
param poisonMinimumItems int = 20

@description('Optional. Minutes an item message may wait for a worker before alerting; above the retry backoff cap (TRAWL_RETRY_MAX_DELAY_SECONDS, 5 minutes), which a retried item waits on purpose.')
@minValue(6)
param queueAgeMinutesThreshold int = 15

@description('Optional. Failed job orchestrations in 15 minutes above which to alert.')
@minValue(0)
param orchestrationFailureThreshold int = 0

@description('Optional. Failed runs of the queue- and timer-triggered functions in 15 minutes above which to alert.')
@minValue(0)
param functionFailureThreshold int = 5

@description('Optional. Percentage of API responses in 15 minutes that were 5xx, above which to alert.')
@minValue(1)
@maxValue(100)
param http5xxPercentThreshold int = 5

@description('Optional. Fewest API responses in the 15 minutes for the 5xx rate to count.')
@minValue(1)
param http5xxMinimumRequests int = 10

@description('Optional. Items put back in 15 minutes because PostgreSQL was unreachable, above which to alert.')
@minValue(0)
param databaseOutagePutBackThreshold int = 0

@description('Optional. PostgreSQL CPU percent (15-minute average) above which to alert.')
@minValue(1)
@maxValue(100)
param postgresCpuPercentThreshold int = 80

@description('Optional. PostgreSQL storage percent above which to alert.')
@minValue(1)
@maxValue(100)
param postgresStoragePercentThreshold int = 85

@description('Optional. Connections the PostgreSQL server refused in 15 minutes (failed sign-ins, too many connections) above which to alert.')
@minValue(0)
param postgresFailedConnectionsThreshold int = 10

// A query's tunables are `let` statements put in front of its file, which names them in its header.
var poisonRateQuery = 'let minimumItems = ${poisonMinimumItems};\n${loadTextContent('../queries/alert-poison-rate.kql')}'
var http5xxRateQuery = 'let minimumRequests = ${http5xxMinimumRequests};\n${loadTextContent('../queries/alert-http-5xx-rate.kql')}'

var logAlerts = [
  {
    name: 'poison-rate'
    displayName: 'Trawl: items given up (poison rate)'
    description: 'Over the last hour, more than the threshold share of finished items were given up after every delivery crashed (an unexpected error or a long database outage). Each one\'s error is in its job\'s audit log.'
    severity: 2
    query: poisonRateQuery
    column: 'poisonedPercent'
    threshold: poisonPercentThreshold
    frequency: 'PT15M'
    window: 'PT1H'
  }
  {
    name: 'queue-age'
    displayName: 'Trawl: items wait too long for a worker'
    description: 'An item message waited longer than the threshold between enqueue and its worker starting: the workers are falling behind or stalled.'
    severity: 2
    query: loadTextContent('../queries/alert-queue-age.kql')
    column: 'oldestMinutes'
    threshold: queueAgeMinutesThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    name: 'orchestration-failures'
    displayName: 'Trawl: job orchestrations failed'
    description: 'A job orchestration failed; the reconciler restarts it after an outage and fails the job otherwise. The reason is in FunctionAppLogs (Host.Triggers.DurableTask).'
    severity: 2
    query: loadTextContent('../queries/alert-orchestration-failures.kql')
    column: 'failures'
    threshold: orchestrationFailureThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    name: 'function-failures'
    displayName: 'Trawl: queue and timer functions failing'
    description: 'Runs of the scrape worker, the poison handler or the reconciler failed (a crash or an unexpected error, never a failed fetch). The exceptions are in FunctionAppLogs.'
    severity: 2
    query: loadTextContent('../queries/alert-function-failures.kql')
    column: 'failures'
    threshold: functionFailureThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    name: 'http-5xx-rate'
    displayName: 'Trawl: API 5xx rate'
    description: 'Over the last 15 minutes, more than the threshold share of API responses were 5xx (4xx responses are the callers\' and do not count).'
    severity: 1
    query: http5xxRateQuery
    column: 'failedPercent'
    threshold: http5xxPercentThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    name: 'database-unreachable'
    displayName: 'Trawl: workers cannot reach PostgreSQL'
    description: 'Scrape workers found PostgreSQL unreachable and put their items back for later. Jobs are delayed, not lost.'
    severity: 1
    query: loadTextContent('../queries/alert-database-unreachable.kql')
    column: 'putBack'
    threshold: databaseOutagePutBackThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
]

var postgresAlerts = [
  {
    name: 'postgres-cpu'
    description: 'PostgreSQL CPU is high.'
    metricName: 'cpu_percent'
    aggregation: 'Average'
    threshold: postgresCpuPercentThreshold
  }
  {
    name: 'postgres-storage'
    description: 'PostgreSQL storage is filling up (it grows automatically, at a cost).'
    metricName: 'storage_percent'
    aggregation: 'Average'
    threshold: postgresStoragePercentThreshold
  }
  {
    name: 'postgres-connections-failed'
    description: 'PostgreSQL refused connections (failed Entra sign-ins, too many connections).'
    metricName: 'connections_failed'
    aggregation: 'Total'
    threshold: postgresFailedConnectionsThreshold
  }
]

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: last(split(applicationInsightsId, '/'))
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'trawl'
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource logAlertRules 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for alert in logAlerts: {
  name: '${namePrefix}${alert.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: alert.displayName
    description: alert.description
    severity: alert.severity
    enabled: true
    scopes: [
      appInsights.properties.WorkspaceResourceId
    ]
    evaluationFrequency: alert.frequency
    windowSize: alert.window
    criteria: {
      allOf: [
        {
          query: alert.query
          timeAggregation: 'Total'
          metricMeasureColumn: alert.column
          operator: 'GreaterThan'
          threshold: alert.threshold
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}]

resource postgresMetricAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [for alert in postgresAlerts: {
  name: '${namePrefix}${alert.name}'
  location: 'global'
  tags: tags
  properties: {
    description: alert.description
    severity: 2
    enabled: true
    scopes: [
      postgresServerId
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          criterionType: 'StaticThresholdCriterion'
          name: alert.metricName
          metricNamespace: 'Microsoft.DBforPostgreSQL/flexibleServers'
          metricName: alert.metricName
          operator: 'GreaterThan'
          threshold: alert.threshold
          timeAggregation: alert.aggregation
        }
      ]
    }
    autoMitigate: true
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}]

@description('The action group\'s name.')
output actionGroupName string = actionGroup.name
