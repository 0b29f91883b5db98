// The operators' workbook (Azure portal: the Log Analytics workspace -> Workbooks -> Trawl operations):
// jobs, items, fetch latency, queues, poison, failing target sites, the API's 5xx rate and PostgreSQL.
// Every pane runs a query from infra/queries/ against the workspace, which holds the app's telemetry
// (App* tables) and the resource logs and metrics of the diagnostic settings.

@description('Required. Resource id of the Log Analytics workspace the panes query.')
param logAnalyticsWorkspaceId string

@description('Optional. Location of the workbook.')
param location string = resourceGroup().location

@description('Optional. Tags applied to the workbook.')
param tags object = {}

@description('Optional. Name the workbook shows in the portal.')
param displayName string = 'Trawl operations'

var workspaceScope = {
  queryType: 0
  resourceType: 'microsoft.operationalinsights/workspaces'
  crossComponentResources: [
    logAnalyticsWorkspaceId
  ]
}

// One pane per query file: name, title, query, chart.
var panes = [
  {
    name: 'jobs'
    title: 'Jobs submitted, and finished by status'
    query: loadTextContent('../queries/workbook-jobs.kql')
    visualization: 'barchart'
  }
  {
    name: 'items-per-minute'
    title: 'Item deliveries per minute, by outcome'
    query: loadTextContent('../queries/workbook-items-per-minute.kql')
    visualization: 'timechart'
  }
  {
    name: 'fetch-latency'
    title: 'Fetch and parse time, p50 and p95 (ms)'
    query: loadTextContent('../queries/workbook-fetch-latency.kql')
    visualization: 'timechart'
  }
  {
    name: 'queue-depth'
    title: 'Queue depth: messages added minus removed since the start of the range'
    query: loadTextContent('../queries/workbook-queue-depth.kql')
    visualization: 'timechart'
  }
  {
    name: 'queue-age'
    title: 'Queue age: wait between enqueue and worker (s)'
    query: loadTextContent('../queries/workbook-queue-age.kql')
    visualization: 'timechart'
  }
  {
    name: 'poison'
    title: 'Items given up (poisoned)'
    query: loadTextContent('../queries/workbook-poison.kql')
    visualization: 'barchart'
  }
  {
    name: 'failing-hosts'
    title: 'Target sites with the most failed fetches (the callers\' problem)'
    query: loadTextContent('../queries/workbook-failing-hosts.kql')
    visualization: 'table'
  }
  {
    name: 'http-5xx'
    title: 'API responses that were 5xx (%)'
    query: loadTextContent('../queries/workbook-http-5xx.kql')
    visualization: 'timechart'
  }
  {
    name: 'postgres'
    title: 'PostgreSQL CPU (%) and connections'
    query: loadTextContent('../queries/workbook-postgres.kql')
    visualization: 'timechart'
  }
]

var timeRange = {
  type: 9
  name: 'parameters'
  content: {
    version: 'KqlParameterItem/1.0'
    parameters: [
      {
        id: 'time-range'
        version: 'KqlParameterItem/1.0'
        name: 'TimeRange'
        label: 'Time range'
        type: 4
        isRequired: true
        value: {
          durationMs: 86400000
        }
        typeSettings: {
          selectableValues: [
            {
              durationMs: 3600000
            }
            {
              durationMs: 14400000
            }
            {
              durationMs: 86400000
            }
            {
              durationMs: 604800000
            }
          ]
        }
      }
    ]
    style: 'pills'
    queryType: 0
    resourceType: 'microsoft.operationalinsights/workspaces'
  }
}

var queryItems = [for pane in panes: {
  type: 3
  name: pane.name
  content: union(workspaceScope, {
    version: 'KqlItem/1.0'
    title: pane.title
    query: pane.query
    timeContextFromParameter: 'TimeRange'
    visualization: pane.visualization
    size: 0
  })
}]

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(logAnalyticsWorkspaceId, 'trawl-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: logAnalyticsWorkspaceId
    version: 'Notebook/1.0'
    serializedData: string({
      version: 'Notebook/1.0'
      items: concat([
        timeRange
      ], queryItems)
      fallbackResourceIds: [
        logAnalyticsWorkspaceId
      ]
    })
  }
}

@description('The workbook\'s resource id.')
output resourceId string = workbook.id
