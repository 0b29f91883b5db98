// Alerts, all to one action group (email):
// - items given up (poison): storage queue metrics are per account, not per queue, so a
//   QueueMessageCount alert cannot single out scrape-items-poison (and give_up_on_item drains that
//   queue at once anyway). The app counts every item it gives up as the custom metric
//   trawl.poison.count; a log alert fires when its sum over the window is above zero.
// - failed-job rate: share of trawl.jobs.finished whose status is failed or timed_out.
// - function errors: failed invocations (requests with success == false), any trigger.
// - PostgreSQL CPU and storage percent: platform metric alerts.

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

@description('Required. Resource id of the Application Insights component the app reports to.')
param applicationInsightsId string

@description('Required. Resource id of the PostgreSQL flexible server.')
param postgresServerId string

@description('Optional. Percentage of finished jobs that failed or timed out, over an hour, above which to alert.')
@minValue(1)
@maxValue(100)
param failedJobPercentThreshold int = 20

@description('Optional. Fewest finished jobs in the hour for the failed-job rate to count (avoids alerting on 1 of 1).')
@minValue(1)
param failedJobMinimumJobs int = 5

@description('Optional. Failed function invocations in 15 minutes above which to alert.')
@minValue(0)
param functionErrorThreshold int = 5

@description('Optional. PostgreSQL CPU percent (15-minute average) above which to alert.')
@minValue(1)
@maxValue(100)
param postgresCpuPercentThreshold int = 80

@description('Optional. PostgreSQL storage percent above which to alert.')
@minValue(1)
@maxValue(100)
param postgresStoragePercentThreshold int = 85

var poisonQuery = '''
customMetrics
| where name == "trawl.poison.count"
| summarize poisoned = sum(valueSum)
'''

var failedJobsQuery = format('''
customMetrics
| where name == "trawl.jobs.finished"
| extend status = tostring(customDimensions.status)
| summarize finished = sum(valueSum), failed = sumif(valueSum, status in ("failed", "timed_out"))
| where finished >= {0}
| project failedPercent = 100.0 * failed / finished
''', failedJobMinimumJobs)

var functionErrorsQuery = '''
requests
| where success == false
| summarize failures = count()
'''

var logAlerts = [
  {
    name: 'poison'
    displayName: 'Trawl: items given up after all retries'
    description: 'trawl.poison.count went up: an item exhausted its retries and went to scrape-items-poison. Its error is in the job\'s audit log.'
    severity: 2
    query: poisonQuery
    column: 'poisoned'
    threshold: 0
    frequency: 'PT5M'
    window: 'PT15M'
  }
  {
    name: 'failed-jobs'
    displayName: 'Trawl: failed-job rate'
    description: 'Over the last hour, more than the threshold share of finished jobs failed or timed out.'
    severity: 2
    query: failedJobsQuery
    column: 'failedPercent'
    threshold: failedJobPercentThreshold
    frequency: 'PT15M'
    window: 'PT1H'
  }
  {
    name: 'function-errors'
    displayName: 'Trawl: function errors'
    description: 'Function invocations (HTTP, queue, timer, Durable) failed.'
    severity: 1
    query: functionErrorsQuery
    column: 'failures'
    threshold: functionErrorThreshold
    frequency: 'PT5M'
    window: 'PT15M'
  }
]

var postgresAlerts = [
  {
    name: 'postgres-cpu'
    description: 'PostgreSQL CPU is high.'
    metricName: 'cpu_percent'
    threshold: postgresCpuPercentThreshold
  }
  {
    name: 'postgres-storage'
    description: 'PostgreSQL storage is filling up (it grows automatically, at a cost).'
    metricName: 'storage_percent'
    threshold: postgresStoragePercentThreshold
  }
]

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
      applicationInsightsId
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
          timeAggregation: 'Average'
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
